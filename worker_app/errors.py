"""Exceptions that tell the worker how a job failed, and therefore whether to retry it."""

from __future__ import annotations


class InvalidJobArguments(ValueError):
    """The message's arguments can never succeed: the job is dead-lettered without retries.

    The message says what was wrong (never the value of anything that could be a secret).
    """


class TransientJobError(RuntimeError):
    """A failure that may pass (a timeout, a 5xx): the job is retried with backoff."""
