"""Benchmarks: each prints a table of figures and ratios against a peer."""
