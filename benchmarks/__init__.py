"""Benchmarks of the scoring engine at city and national scale (`python -m benchmarks.run`).

Not part of the installed package: they generate synthetic districts (`scoring.synthetic`),
time the engine against a plain-Python reference, and record where the time and memory go.
"""
