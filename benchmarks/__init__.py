"""Benchmarks, run with ``make bench`` (``python -m benchmarks``); not part of the test suite.

Each public module here offers ``main()``, which runs its measurements and prints a table.
"""
