"""Benchmarks of the product, beside their results: ``python -m benchmarks.<name>`` from the repository root.

Not installed: the wheel holds :mod:`tuning` alone, and :mod:`tuning` never imports this package.
"""
