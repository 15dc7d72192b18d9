"""fastfeed benchmarks: micro (pytest-benchmark) and loopback load runs; docs/benchmarks.md."""
