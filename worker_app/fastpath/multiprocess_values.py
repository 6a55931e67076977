"""Writes to prometheus_client's multiprocess files, several per lock, for the metrics of every job.

Reference behaviour: `Counter.inc`, `Gauge.inc`/`Gauge.dec` and `Histogram.observe` on label
children in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` set). Each of those takes
prometheus_client's process-wide lock, asks the kernel for the pid (to notice a fork), adds to the
value and packs it into the process's memory-mapped file: about 1 us per call, 2.6 us for an
observation, five calls per job. Here the same values change by the same amounts and the same
bytes land at the same places in the same files, with one lock per batch of writes and the fork
noticed through `os.register_at_fork`, not a system call per write. `tests/worker/test_fast_paths.py`
writes the same sequence both ways and compares the files.

Anything unusual (in-memory values, a file that was remapped to grow, a fork since the last write)
goes through prometheus_client's own method for that value, which redoes its bookkeeping.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from typing import Any

#: How prometheus_client's `MmapedDict` stores a value and its timestamp (`_pack_two_doubles`).
_PACK = struct.Struct("dd").pack_into
#: Held around every batch of fast writes of this process (prometheus_client, in multiprocess mode,
#: has one process-wide lock too), e.g. ``with WRITE_LOCK: in_progress.add(-1); processed.add(1)``.
WRITE_LOCK = threading.Lock()
_generation = 0


def _forked() -> None:
    global _generation  # noqa: PLW0603 - the one process-wide fact a fork changes
    _generation += 1
    # A thread of the parent may have held it at the fork: no thread of the child ever will.
    WRITE_LOCK._at_fork_reinit()  # type: ignore[attr-defined]  # as `threading` and `logging` do


os.register_at_fork(after_in_child=_forked)


class FastValue:
    """One prometheus_client value (a counter's, a gauge's, a histogram bucket's or sum) written directly.

    Call it with `WRITE_LOCK` held; the value must only be changed through `FastValue`s (and
    only one per value) once one exists, as `PrometheusMetrics` does with its per-actor children.

    :param value: the child's `_value` (`_sum`, `_buckets[i]` of a histogram child): a
      prometheus_client `MmapedValue`, or its in-memory `MutexValue`, which is always delegated to.

    Example (what `PrometheusMetrics` does per delivery)::

        in_progress = FastValue(gauge.labels("default", "ping")._value)
        processed = FastValue(counter.labels("default", "ping", "success")._value)
        timing = FastHistogram(histogram.labels("default", "ping"))
        with WRITE_LOCK:
            in_progress.add(-1.0)       # gauge.dec()
            timing.observe(0.004)       # histogram.observe(0.004)
            processed.add(1.0)          # counter.inc()
    """

    __slots__ = ("_file", "_generation", "_map", "_position", "_value")

    def __init__(self, value: Any) -> None:
        self._value = value
        self._file: Any = None
        self._map: Any = None
        self._position = 0
        self._generation = -1

    def add(self, amount: float) -> None:
        """Add `amount` (negative for a gauge's `dec`) as the value's own `inc` would. Hold `WRITE_LOCK`."""
        value = self._value
        file = value.__dict__.get("_file")
        if self._generation == _generation and file is self._file and file._m is self._map:
            value._value += amount
            _PACK(self._map, self._position, value._value, 0.0)
            return
        value.inc(amount)  # prometheus_client's path: after a fork it moves every value to the new files
        self._resolve()

    def _resolve(self) -> None:
        value = self._value
        file = value.__dict__.get("_file")
        if file is None or not getattr(value, "_multiprocess", False):
            return  # in-memory values always take their own path
        self._file, self._map = file, file._m
        self._position = file._positions[value._key]
        self._generation = _generation


class FastHistogram:
    """A histogram child's `observe` in multiprocess mode: its sum and one bucket, as `Histogram.observe`.

    :param child: the label child (`histogram.labels(...)`).
    """

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Any) -> None:
        self._bounds: Sequence[float] = tuple(child._upper_bounds)
        self._sum = FastValue(child._sum)
        self._buckets = [FastValue(bucket) for bucket in child._buckets]

    def observe(self, amount: float) -> None:
        """`Histogram.observe(amount)` (no exemplar: in multiprocess mode prometheus_client drops it). Hold `WRITE_LOCK`."""
        self._sum.add(amount)
        for index, bound in enumerate(self._bounds):  # the same walk: a NaN lands in no bucket
            if amount <= bound:
                self._buckets[index].add(1.0)
                break


def multiprocess(child: Any) -> bool:
    """Whether `child` (a label child) writes to prometheus_client's multiprocess files."""
    value = getattr(child, "_value", None) or getattr(child, "_sum", None)
    return bool(getattr(value, "_multiprocess", False))
