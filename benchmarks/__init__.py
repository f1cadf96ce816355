"""Benchmarks: jobkit side by side with huey and raw SQLite (`make bench`)."""
