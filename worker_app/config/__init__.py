"""What every wing shares and nothing else: queue names and how configuration values are read.

`queues` spells the queue names and Dramatiq's Redis key namespace once; `envparse` turns
environment values into typed ones with a one-line `ConfigError` naming the variable. This package
imports nothing else of `worker_app`.
"""
