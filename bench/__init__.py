"""Benchmarks against real local services (`python -m bench.limiter`); not part of the package."""
