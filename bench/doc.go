// Package bench measures the data plane against a bare net/http handler that
// answers a constant string.
//
// The benchmarks in this package run the handlers in process, without
// sockets, and report allocations per request side by side:
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// The loopback comparison (requests per second, p50 and p99 latency, ratio to
// the baseline) is the imdsbench command in bench/cmd/imdsbench. Numbers and
// the commands that produced them are in docs/benchmarks.md.
package bench
