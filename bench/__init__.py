"""The benchmarks: ``python -m bench.run`` (make bench), ``python -m bench.footprint`` (make
bench-footprint), from the repository root."""
