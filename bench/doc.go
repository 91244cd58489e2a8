// Package bench is pullthrough's side-by-side benchmark: the same upstream
// registry and the same S3 server behind pullthrough (local server and the
// Lambda bootstrap), the distribution registry in proxy mode, and no mirror
// at all. It lives in TestBench (bench_test.go), which runs only with
// PULLTHROUGH_BENCH=1 (make bench) and writes build/bench/report.{md,json}.
// It is not part of make test and holds no product code.
package bench
