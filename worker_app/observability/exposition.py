"""What `/metrics` serves: every worker process's metric files, then the collectors of the server.

`ServerRegistry.encode` renders the files' part with `fastpath.multiprocess_exposition` (incremental
reads, cached formatting) and the small rest with prometheus_client; `encoder(registry)`, the
library's own way, gives the same samples (and is what `encode` falls back to).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from ..fastpath.multiprocess_exposition import MultiProcessReader, Renderer, Unsupported, encoder_kind
from .exemplars import ExemplarMultiProcessCollector, read_exemplars
from .metrics import PROCESSING_TIME
from .metrics_dir import MetricsDirectory

#: The histogram whose buckets carry exemplars.
HISTOGRAM_WITH_EXEMPLARS = PROCESSING_TIME


class ServerRegistry(CollectorRegistry):
    """The worker processes' metrics (with exemplars), then the `others` collectors.

    :param metrics_dir: the metrics directory the worker processes write.
    :param others: collectors of the serving process (queue depth, worker processes).

    Example::

        registry = ServerRegistry("/tmp/metrics", QueueDepthCollector(client_factory=..., queues=ALL_QUEUES))
        body = registry.encode(choose_encoder(accept_header)[0])
    """

    def __init__(self, metrics_dir: str, *others: Collector) -> None:
        super().__init__(auto_describe=True)
        self._metrics_dir = metrics_dir
        self.register(ExemplarMultiProcessCollector(metrics_dir, HISTOGRAM_WITH_EXEMPLARS))
        self._rest = CollectorRegistry(auto_describe=True)
        for collector in others:
            self.register(collector)
            self._rest.register(collector)
        self._reader = MultiProcessReader(list_files=MetricsDirectory(metrics_dir).metric_files)
        self._renderers: dict[object, Renderer] = {}

    def encode(self, encoder: Callable[..., bytes]) -> bytes:
        """The exposition `encoder` (from `choose_encoder`) would produce for this registry."""
        kind = encoder_kind(encoder)
        if kind is None:
            return encoder(self)
        renderer = self._renderers.get(kind)
        if renderer is None:
            renderer = self._renderers[kind] = Renderer(encoder)
        try:
            families = self._reader.families()
        except Unsupported:
            return encoder(self)
        exemplars = read_exemplars(self._metrics_dir) if kind[0] else None
        lines = renderer.render(families, exemplars, HISTOGRAM_WITH_EXEMPLARS)
        lines += renderer.render_metrics(self._rest.collect())
        lines.append(renderer.end())
        return "".join(lines).encode("utf-8")
