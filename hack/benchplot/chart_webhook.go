package main

import "fmt"

// webhook-tokens: go run ./hack/bench/tokenreview -scale … -csv (make bench-scale).
func init() {
	charts["webhook-tokens"] = chart{
		title:  "TokenReview webhook: cost as distinct live tokens grow",
		x:      "tokens",
		xlabel: "distinct live tokens (log)",
		logX:   true,
		panels: []panel{
			{title: "Throughput", ylabel: "reviews/s", lines: []series{{"reviews/s", "reviews_per_s", 1}}},
			{title: "Latency", ylabel: "ms", lines: []series{{"p50", "p50_ms", 1}, {"p99", "p99_ms", 1}}},
			{title: "Server CPU per review", ylabel: "µs", lines: []series{{"CPU/review", "server_cpu_us_per_review", 1}}},
			{title: "Verification cache hits", ylabel: "%", percent: true, lines: []series{{"hit ratio", "cache_hit_ratio", 100}}},
			{title: "Server resident memory", ylabel: "MiB", lines: []series{{"RSS after the run", "rss_mib", 1}, {"peak RSS", "peak_rss_mib", 1}}},
		},
		note: func(t *table) string {
			if cs := t.cols["cache_size"]; len(cs) > 0 {
				return fmt.Sprintf("verification cache: %.0f tokens (tokens.cacheSize)", cs[0])
			}
			return ""
		},
	}
}
