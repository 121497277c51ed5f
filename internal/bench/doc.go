// Package bench owns the benchmark that `bash hack/bench.sh` runs: real distribution
// `registry` processes, a real `promoter serve` process and the peer CLIs (crane, regctl,
// skopeo), measured in one run and printed as one markdown table with the targets of
// issue 14 next to each figure.
//
// It owns the measurements (latency.go, copy.go, ingest.go, rss.go), the processes they
// run against (procs.go), the statistics (stats.go) and the report (report.go).
//
// It must not be imported by the daemon or the CLI: everything it measures it runs as a
// separate process built from the tree, so the shipped binary carries no benchmark code
// and no peer tool. Nothing in it asserts on time; the targets are reported, not enforced.
package bench
