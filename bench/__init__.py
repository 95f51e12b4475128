"""Benchmarks: each module measures a figure beside a baseline taken in the same run."""
