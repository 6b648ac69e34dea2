package main

// store-sessions: go run ./hack/bench/store -csv … (bolt rows) and
// BenchmarkKubernetesSessionScale with PORTCULLIS_BENCH_CSV (kubernetes rows);
// make bench-scale-store. One line per backend.
func init() {
	charts["store-sessions"] = chart{
		title:  "Session store: cost as sessions grow",
		x:      "sessions",
		xlabel: "sessions (log)",
		logX:   true,
		group:  "backend",
		panels: []panel{
			{title: "Refresh latency (session.Manager, one at a time)", ylabel: "ms", lines: []series{{"p50", "refresh_p50_ms", 1}, {"p99", "refresh_p99_ms", 1}}},
			{title: "Refreshes/s, one replica, 8 in flight", ylabel: "refreshes/s", lines: []series{{"", "refreshes_per_s", 1}, {"no client-side limit", "refreshes_per_s_unlimited", 1}}},
			{title: "Replica memory", ylabel: "MiB", lines: []series{{"Go heap in use", "heap_mib", 1}, {"RSS", "rss_mib", 1}}},
			{title: "Memory outside the replica's heap", ylabel: "MiB", lines: []series{{"mapped file in RSS", "rss_file_mib", 1}, {"kube-apiserver heap", "apiserver_heap_mib", 1}, {"etcd RSS", "etcd_rss_mib", 1}}},
			{title: "On disk", ylabel: "MiB", lines: []series{{"state file", "file_mib", 1}, {"etcd database", "etcd_db_mib", 1}}},
			{title: "GarbageCollect", ylabel: "ms", lines: []series{{"100 ended", "gc_ended_ms", 1}, {"none ended", "gc_nothing_ms", 1}}},
			{title: "Opening the store", ylabel: "s", lines: []series{{"", "open_ms", 0.001}, {"cold page cache", "open_cold_ms", 0.001}}},
			{title: "ListSessions of all", ylabel: "s", lines: []series{{"", "list_all_s", 1}}},
		},
	}
}
