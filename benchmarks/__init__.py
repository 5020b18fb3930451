"""Benchmarks: run by hand (python -m benchmarks.NAME); each writes JSON and a PNG plot."""
