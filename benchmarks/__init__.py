"""Benchmarks of the AgriTrace registry: `make bench` (python -m benchmarks.run)."""
