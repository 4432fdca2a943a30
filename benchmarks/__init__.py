"""Benchmarks for sparsekit_fx: run ``python -m pytest benchmarks`` (see the README)."""
