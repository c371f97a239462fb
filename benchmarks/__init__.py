"""Benchmarks: our engine against a reference tool on the same input, in one run.

Each benchmark prints both times and their ratio (ours / reference). Ratios,
not bare seconds, are what to compare across machines: this host is noisy.
"""
