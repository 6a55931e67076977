"""Benchmarks of the worker's tracing and metrics against bare Dramatiq and the alternatives (`make bench`)."""
