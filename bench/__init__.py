"""Benchmarks; each one measures its own baseline in the same run."""
