package main

import (
	"strconv"
	"strings"
)

// login: go test ./test/e2e -run '^$' -bench LoginCurve -benchtime 1x
// -login-csv … (make bench-scale-login). One line per series (the IdP's
// cost: Dex's bcrypt cost, or no password at all).
func init() {
	charts["login"] = chart{
		title:  "Login portal: complete logins with a local Dex",
		x:      "inflight",
		xlabel: "logins in flight (log)",
		logX:   true,
		group:  "series",
		panels: []panel{
			{title: "Throughput", ylabel: "logins/s", lines: []series{{"logins/s", "logins_per_s", 1}}},
			{title: "Latency of a login", ylabel: "ms", lines: []series{{"p50", "p50_ms", 1}, {"p99", "p99_ms", 1}}},
			{title: "portcullis-server CPU per login", ylabel: "ms", lines: []series{{"", "portcullis_cpu_ms_per_login", 1}}},
			{title: "Dex CPU per login", ylabel: "ms", lines: []series{{"", "dex_cpu_ms_per_login", 1}}},
			{title: "CPU used", ylabel: "cores", lines: []series{{"portcullis-server", "portcullis_cores", 1}, {"Dex", "dex_cores", 1}}},
			{title: "Resident memory after each point", ylabel: "MiB", lines: []series{{"portcullis-server", "portcullis_rss_mib", 1}, {"Dex", "dex_rss_mib", 1}}},
		},
		note: func(t *table) string {
			loads := t.text["load1_start"]
			if len(loads) == 0 {
				return ""
			}
			return "1-minute load average at the points: " + strings.Join(minMax(t.cols["load1_start"], t.cols["load1_end"]), " to ")
		},
	}
}

// minMax is the smallest and largest value of the columns, as text.
func minMax(cols ...[]float64) []string {
	lo, hi, seen := 0.0, 0.0, false
	for _, c := range cols {
		for _, v := range c {
			if !seen || v < lo {
				lo = v
			}
			if !seen || v > hi {
				hi = v
			}
			seen = true
		}
	}
	if !seen {
		return nil
	}
	return []string{formatLoad(lo), formatLoad(hi)}
}

func formatLoad(v float64) string { return strings.TrimRight(strings.TrimRight(fmtFloat(v), "0"), ".") }

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
