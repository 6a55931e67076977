"""The worker processes' metrics, read from their files and rendered, fast enough for every scrape.

Reference behaviour: `prometheus_client.multiprocess.MultiProcessCollector` collected and rendered by
`prometheus_client.exposition.generate_latest` / `openmetrics.exposition.generate_latest`;
`tests/worker/test_multiprocess_exposition.py` compares the two, sample for sample.

The library's multiprocess collector re-reads and re-parses every entry of every file on each
scrape (a JSON decode per entry) and its exposition formats every sample from scratch (what that
costs per scrape is in docs/benchmarks.md). Here:

- Files are append-only (a process adds an entry the first time it uses a label set and rewrites
  only values afterwards), so each file's entries are parsed once: later scrapes read the values at
  the positions already known, and parse only entries appended since.
- Each sample's text up to its value (name and labels, escaped by prometheus_client itself the
  first time) is kept, so a scrape formats values only.

Merging follows prometheus_client's rules for the kinds this package writes (counters, histograms,
`livesum`/`sum` gauges); a directory holding anything else is left to the library.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.utils import floatToGoString

_INT = struct.Struct("i").unpack_from
_DOUBLE = struct.Struct("d").unpack_from
_SUPPORTED = {"counter": "counter", "summary": "summary", "histogram": "histogram"}
_SUMMED_GAUGES = ("livesum", "sum")
#: Formatted values kept (counts repeat from scrape to scrape).
_VALUE_CACHE = 4096

LabelsKey = tuple[tuple[str, str], ...]
#: metric name, sample name, sorted labels, help, histogram bucket bound (else None), labels without `le`
_Parsed = tuple[str, str, LabelsKey, str, float | None, LabelsKey]
#: (queue, actor, le) -> (trace id, span id, value, unix time), as the exemplar files hold them
ExemplarsByKey = dict[tuple[str, str, str], tuple[str, str, float, float]]


class Unsupported(Exception):
    """The directory holds metric kinds this module does not merge: use prometheus_client."""


@dataclass
class _File:
    inode: int
    parsed_to: int = 8
    #: (position of the value, parsed key) per entry
    entries: list[tuple[int, _Parsed]] = field(default_factory=list)


@dataclass
class Family:
    name: str
    kind: str
    documentation: str
    samples: dict[tuple[str, LabelsKey], float] = field(default_factory=dict)
    #: histograms: labels (without le) -> upper bound -> count in that bucket alone
    buckets: dict[LabelsKey, dict[float, float]] = field(default_factory=dict)


class MultiProcessReader:
    """Reads the worker processes' metric files, remembering what it parsed.

    :param list_files: returns the paths of the metric files (`*.db`) to read now; the metrics
      directory's layout is known by its owner (`observability.metrics_dir`), not here.

    Example::

        reader = MultiProcessReader(list_files=MetricsDirectory(path).metric_files)
        families = reader.families()
    """

    def __init__(self, *, list_files: Callable[[], list[str]]) -> None:
        self._list_files = list_files
        self._files: dict[str, _File] = {}
        self._keys: dict[bytes, _Parsed] = {}
        self._lock = threading.Lock()  # scrapes may overlap (threaded server)

    def families(self) -> list[Family]:
        with self._lock:
            return self._families()

    def _families(self) -> list[Family]:
        families: dict[str, Family] = {}
        paths = sorted(self._list_files())
        for gone in set(self._files) - set(paths):
            del self._files[gone]
        for path in paths:
            parts = os.path.basename(path).split("_")
            kind = parts[0]
            if kind == "gauge":
                if parts[1] not in _SUMMED_GAUGES:
                    raise Unsupported(path)
            elif kind not in _SUPPORTED:
                raise Unsupported(path)
            try:
                with open(path, "rb") as handle:
                    inode = os.fstat(handle.fileno()).st_ino
                    data = handle.read()
            except FileNotFoundError:
                continue  # a dead process's live gauge file, removed since the glob
            entries = self._entries(path, inode, data)
            for position, (metric_name, sample_name, labels, documentation, bound, without_le) in entries:
                value = _DOUBLE(data, position)[0]
                family = families.get(metric_name)
                if family is None:
                    family = families[metric_name] = Family(metric_name, kind, documentation)
                if bound is not None and kind == "histogram":
                    by_bound = family.buckets.get(without_le)
                    if by_bound is None:
                        by_bound = family.buckets[without_le] = {}
                    by_bound[bound] = by_bound.get(bound, 0.0) + value
                else:
                    key = (sample_name, labels)
                    family.samples[key] = family.samples.get(key, 0.0) + value
        return list(families.values())

    def _entries(self, path: str, inode: int, data: bytes) -> list[tuple[int, _Parsed]]:
        known = self._files.get(path)
        if known is None or known.inode != inode:
            known = self._files[path] = _File(inode)
        used = _INT(data, 0)[0] if len(data) >= 8 else 0
        if used < known.parsed_to:  # rewritten from scratch (cannot happen with prometheus_client)
            known = self._files[path] = _File(inode)
        position = known.parsed_to
        while position < used:
            length = _INT(data, position)[0]
            if length + position > used:
                raise RuntimeError(f"{path}: read beyond the used size, the file is corrupted")
            position += 4
            raw = data[position : position + length]
            position += length + (8 - (length + 4) % 8)
            known.entries.append((position, self._parse(raw)))
            position += 16
        known.parsed_to = max(position, known.parsed_to)
        return known.entries

    def _parse(self, raw: bytes) -> _Parsed:
        parsed = self._keys.get(raw)
        if parsed is None:
            metric_name, sample_name, labels, documentation = json.loads(raw.decode("utf-8"))
            le = labels.get("le")
            sorted_labels = tuple(sorted(labels.items()))
            parsed = self._keys[raw] = (
                metric_name,
                sample_name,
                sorted_labels,
                documentation,
                float(le) if le is not None else None,
                tuple(item for item in sorted_labels if item[0] != "le"),
            )
        return parsed


class _OneMetric:
    """A collector of one metric, to have prometheus_client format a header or a sample line."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> list[Metric]:
        return [self._metric]


def encoder_kind(encoder: Callable[..., bytes]) -> tuple[bool, tuple[tuple[str, Any], ...]] | None:
    """(OpenMetrics?, its options) of one of prometheus_client's encoders, None for any other."""
    function = getattr(encoder, "func", encoder)
    options = tuple(sorted(getattr(encoder, "keywords", {}).items()))
    if function is openmetrics.generate_latest:
        return True, options
    if function is exposition.generate_latest:
        return False, options
    return None


class Renderer:
    """Text or OpenMetrics exposition of merged families, each piece formatted by prometheus_client once.

    `encoder` is what `prometheus_client.exposition.choose_encoder` returned for the scrape.
    """

    def __init__(self, encoder: Callable[..., bytes]) -> None:
        kind = encoder_kind(encoder)
        if kind is None:
            raise Unsupported(repr(encoder))
        self._openmetrics = kind[0]
        self._generate = encoder
        self._headers: dict[tuple[str, str, str], str] = {}
        self._prefixes: dict[tuple[str, LabelsKey], str] = {}
        self._les: dict[float, str] = {}
        self._values: dict[float, str] = {}

    def render(self, families: Iterable[Family], exemplars: ExemplarsByKey | None, histogram: str) -> list[str]:
        out: list[str] = []
        for family in families:
            out.append(self._header(family))
            if family.kind != "histogram":
                for (sample_name, labels), value in family.samples.items():
                    out.append(self._line(sample_name, labels, value))
                continue
            bucket_name = family.name + "_bucket"
            with_exemplars = exemplars if self._openmetrics and family.name == histogram else None
            for labels, by_bound in family.buckets.items():
                sum_key = (family.name + "_sum", labels)
                if sum_key in family.samples:
                    out.append(self._line(sum_key[0], labels, family.samples[sum_key]))
                labels_map = dict(labels)
                queue, actor = labels_map.get("queue", ""), labels_map.get("actor", "")
                total = 0.0
                for bound in sorted(by_bound):
                    total += by_bound[bound]
                    le = self._le(bound)
                    line = self._line(bucket_name, (*labels, ("le", le)), total)
                    found = with_exemplars.get((queue, actor, le)) if with_exemplars else None
                    if found is not None:
                        line = line[:-1] + _exemplar_text(found) + "\n"
                    out.append(line)
                out.append(self._line(family.name + "_count", labels, total))
        return out

    def render_metrics(self, metrics: Iterable[Metric]) -> list[str]:
        """Collected metrics (the queue depth, the process count), through the same caches."""
        out: list[str] = []
        for metric in metrics:
            if metric.unit or any(sample.timestamp is not None or sample.exemplar for sample in metric.samples):
                out.append(self._generate(_OneMetric(metric)).decode().removesuffix("# EOF\n"))
                continue
            out.append(self._header(Family(metric.name, metric.type, metric.documentation)))
            for sample in metric.samples:
                out.append(self._line(sample.name, tuple(sorted(sample.labels.items())), sample.value))
        return out

    def end(self) -> str:
        return "# EOF\n" if self._openmetrics else ""

    def _le(self, bound: float) -> str:
        le = self._les.get(bound)
        if le is None:
            le = self._les[bound] = str(floatToGoString(bound))
        return le

    def _header(self, family: Family) -> str:
        key = (family.name, family.kind, family.documentation)
        header = self._headers.get(key)
        if header is None:
            text = self._generate(_OneMetric(Metric(family.name, family.documentation, family.kind))).decode()
            header = self._headers[key] = text.removesuffix("# EOF\n")
        return header

    def _line(self, sample_name: str, labels: LabelsKey, value: float) -> str:
        key = (sample_name, labels)
        prefix = self._prefixes.get(key)
        if prefix is None:
            metric = Metric("prefix_probe", "", "unknown")
            metric.add_sample(sample_name, dict(labels), 0.0)
            line = self._generate(_OneMetric(metric)).decode().splitlines()[2]
            prefix = self._prefixes[key] = line.removesuffix(" 0.0") + " "
        text = self._values.get(value)
        if text is None:
            text = str(floatToGoString(value))
            if len(self._values) < _VALUE_CACHE:
                self._values[value] = text
        return prefix + text + "\n"


def _exemplar_text(found: tuple[str, str, float, float]) -> str:
    """What prometheus_client's OpenMetrics exposition appends to a bucket line for its exemplar."""
    trace_id, span_id, value, at = found
    labels = ",".join(
        f'{key}="{text.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + "n").replace(chr(34), chr(92) + chr(34))}"'
        for key, text in (("span_id", span_id), ("trace_id", trace_id))
    )
    return f" # {{{labels}}} {floatToGoString(value)} {at}"
