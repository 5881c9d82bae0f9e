"""Benchmarks: `make bench` (python -m bench). Results go to bench/results/*.json and docs/benchmarks.md."""
