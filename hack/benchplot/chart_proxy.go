package main

import "fmt"

// proxy-clusters and proxy-watches: go test ./test/e2e -bench
// 'ProxyClusters|ProxyWatches' (make bench-scale-proxy).
func init() {
	charts["proxy-clusters"] = chart{
		title:  "Impersonating proxy: cost as clusters grow (all on one kube-apiserver)",
		x:      "clusters",
		xlabel: "clusters in the configuration (log)",
		logX:   true,
		panels: []panel{
			{title: "Throughput (16 GETs in flight)", ylabel: "req/s", lines: []series{{"own run", "req_per_s", 1}, {"interleaved", "interleaved_req_per_s", 1}}},
			{title: "Latency", ylabel: "ms", lines: []series{{"p50", "p50_ms", 1}, {"p99", "p99_ms", 1}, {"p50 interleaved", "interleaved_p50_ms", 1}, {"p99 interleaved", "interleaved_p99_ms", 1}}},
			{title: "CPU per request", ylabel: "µs", lines: []series{{"Portcullis", "portcullis_cpu_us_per_req", 1}, {"kube-apiserver", "apiserver_cpu_us_per_req", 1},
				{"Portcullis interleaved", "interleaved_portcullis_cpu_us_per_req", 1}, {"kube-apiserver interleaved", "interleaved_apiserver_cpu_us_per_req", 1}}},
			{title: "Portcullis memory", ylabel: "MiB", lines: []series{{"RSS after the load", "rss_mib", 1}, {"Go heap after a GC", "heap_mib", 1}}},
			{title: "Connections to kube-apiserver", ylabel: "TCP connections", lines: []series{{"total", "upstream_conns", 1}}},
			{title: "Portcullis goroutines", ylabel: "goroutines", lines: []series{{"goroutines", "goroutines", 1}}},
			{title: "Portcullis open files", ylabel: "file descriptors", lines: []series{{"all", "fds", 1}, {"inotify instances", "inotify_instances", 1}}},
		},
	}
	charts["proxy-watches"] = chart{
		title:  "Impersonating proxy: cost as idle watches grow",
		x:      "watches",
		xlabel: "idle watches open through Portcullis",
		panels: []panel{
			{title: "Portcullis memory", ylabel: "MiB", lines: []series{{"RSS", "rss_mib", 1}, {"Go heap", "heap_mib", 1}, {"goroutine stacks", "stack_mib", 1}}},
			{title: "Portcullis memory per watch", ylabel: "KiB", lines: []series{{"RSS", "rss_kib_per_watch", 1}, {"Go heap + stacks", "go_kib_per_watch", 1}}},
			{title: "Connections", ylabel: "TCP connections", lines: []series{{"clients → Portcullis", "client_conns", 1}, {"Portcullis → kube-apiserver", "upstream_conns", 1}}},
			{title: "Goroutines", ylabel: "goroutines", lines: []series{{"Portcullis", "goroutines", 1}}},
			{title: "Portcullis CPU while idle", ylabel: "ms of CPU per s", lines: []series{{"idle CPU", "idle_cpu_ms_per_s", 1}}},
			{title: "One event to every watch", ylabel: "ms", lines: []series{{"delivered to all", "fanout_ms", 1}, {"CPU: Portcullis", "fanout_cpu_ms", 1}, {"CPU: kube-apiserver", "fanout_apiserver_cpu_ms", 1}, {"CPU: client", "fanout_client_cpu_ms", 1}}},
			{title: "kube-apiserver memory", ylabel: "MiB", lines: []series{{"RSS", "apiserver_rss_mib", 1}}},
		},
		note: func(t *table) string {
			if g := t.cols["goroutines_per_watch"]; len(g) > 0 {
				return fmt.Sprintf("Portcullis goroutines per watch: %.2f", g[len(g)-1])
			}
			return ""
		},
	}
}
