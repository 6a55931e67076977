"""Worker metrics: deliveries, errors, retries, dead letters, processing time, queues (Prometheus).

Every query filters on `namespace=~"$namespace"` and `job=~"$job"`. `$namespace` defaults to All,
whose value is `.*`: that also matches series without a `namespace` label (a Prometheus outside
Kubernetes, like the local e2e stack), so the dashboard works with or without one. Queue depth is
read from Redis by every pod, so it is aggregated with `max by (queue, state)`, never summed.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, stat, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    ScaleDistributionConfig,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from .common import (
    LOGS_UID,
    METRICS_UID,
    PROMETHEUS,
    TRACES_UID,
    add_sections,
    all_option,
    dashboard,
    dashboard_url,
    datasource_variable,
    link,
    prom,
    thresholds,
)

RATE = "[$__rate_interval]"
#: Selectors: the scrape target (namespace, job), then the queue, then queue and actor.
TARGET = 'namespace=~"$namespace", job=~"$job"'
QUEUE = f'{TARGET}, queue=~"$queue"'
ACTOR = f'{QUEUE}, actor=~"$actor"'

PROCESSED = f"dramatiq_messages_processed_total{{{ACTOR}}}"
RAN = f'dramatiq_messages_processed_total{{{ACTOR}, outcome!="skipped"}}'
ERRORS = f"dramatiq_errors_total{{{ACTOR}}}"
BUCKETS = f"dramatiq_message_processing_time_bucket{{{ACTOR}}}"


def error_ratio(by: str) -> str:
    """Errors per delivery that ran the actor; 0 rather than "no data" while nothing failed."""
    grouping = f" by ({by})" if by else ""
    return (
        f"(\n  sum{grouping} (rate({ERRORS}{RATE}))\n  or\n  sum{grouping} (rate({RAN}{RATE})) * 0\n)\n"
        f"/\nsum{grouping} (rate({RAN}{RATE}))"
    )


def quantile(q: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({BUCKETS}{RATE})))"


# --------------------------------------------------------------------------------------------- variables


def _query_variable(name: str, label: str, query: str, description: str, all_value: str | None) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(all_option())
    )
    return variable.all_value(all_value) if all_value is not None else variable


def variables() -> list[db.QueryVariable | db.DatasourceVariable]:
    return [
        datasource_variable("datasource", "prometheus", "Prometheus"),
        _query_variable(
            "namespace",
            "Namespace",
            "label_values(dramatiq_worker_processes, namespace)",
            "Kubernetes namespace of the worker pods. All is `.*`, which also matches series without a "
            "namespace label (a Prometheus outside Kubernetes).",
            ".*",
        ),
        # No custom All value: All means every job with worker metrics, never every job of Prometheus.
        _query_variable(
            "job",
            "Job",
            'label_values(dramatiq_worker_processes{namespace=~"$namespace"}, job)',
            "Scrape job of the worker metrics (with the Prometheus Operator: the metrics Service's name).",
            None,
        ),
        _query_variable(
            "queue", "Queue", f"label_values(dramatiq_queue_depth{{{TARGET}}}, queue)", "Dramatiq queue.", ".*"
        ),
        _query_variable(
            "actor",
            "Actor",
            f"label_values(dramatiq_messages_processed_total{{{QUEUE}}}, actor)",
            "Dramatiq actor. Queue depth has no actor label: it follows the queue only.",
            ".*",
        ),
    ]


# --------------------------------------------------------------------------------------------- panel kinds


def _last_value() -> ReduceDataOptions:
    return ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def _stat(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .with_target(prom(expr, legend=title))
        .reduce_options(_last_value())
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.VALUE)
        .height(4)
        .span(3)
    )


def _timeseries(title: str, description: str, unit: str, span: int = 12) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .min(0)
        .fill_opacity(10)
        .line_width(1)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(
            VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
        .height(8)
        .span(span)
    )


def _failed_jobs_link() -> db.DashboardLink:
    return link(
        "Failed jobs of ${__field.labels.queue}", dashboard_url(TRACES_UID, ("queue", "${__field.labels.queue}"))
    )


def _warning_logs_link() -> db.DashboardLink:
    return link(
        "Warnings and errors logged by ${__field.labels.actor}",
        dashboard_url(LOGS_UID, ("actor", "${__field.labels.actor}"), ("level", "WARNING"), ("level", "ERROR")),
    )


# --------------------------------------------------------------------------------------------- sections


def _overview() -> list[stat.Panel]:
    error_ratio_stat = (
        _stat(
            "Error ratio",
            "Deliveries whose actor raised an error, per delivery that ran the actor (retried attempts included).",
            "percentunit",
            error_ratio(""),
        )
        .thresholds(thresholds((None, "green"), (0.01, "orange"), (0.1, "red")))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
    )
    dead_letters = (
        _stat(
            "Dead letters",
            "Messages in the dead-letter queues now (Dramatiq keeps them 7 days); their reasons are in the logs "
            "dashboard (`Job dead-lettered` lines).",
            "short",
            f'sum(max by (queue) (dramatiq_queue_depth{{{QUEUE}, state="dead"}}))',
        )
        .thresholds(thresholds((None, "green"), (1, "orange")))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
    )
    broker = (
        _stat(
            "Broker",
            "Whether every worker read the queue depth from Redis at its last scrape.",
            "none",
            f"min(dramatiq_broker_up{{{TARGET}}})",
        )
        .mappings(
            [
                dm.ValueMap(
                    options={
                        "0": dm.ValueMappingResult(text="unreachable", color="red", index=0),
                        "1": dm.ValueMappingResult(text="up", color="green", index=1),
                    },
                )
            ]
        )
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
    )
    targets = (
        stat.Panel()
        .title("Targets up")
        .description("Worker metrics targets Prometheus scraped successfully, out of all of them.")
        .datasource(PROMETHEUS)
        .unit("short")
        .with_target(prom(f"sum(up{{{TARGET}}})", legend="up"))
        .with_target(prom(f"count(up{{{TARGET}}})", legend="targets", ref="B"))
        .reduce_options(_last_value())
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .height(4)
        .span(3)
    )
    return [
        _stat("Deliveries", "Deliveries finished per second, every outcome.", "ops", f"sum(rate({PROCESSED}{RATE}))"),
        error_ratio_stat,
        _stat("p95 processing time", "95th percentile of the actor run time.", "s", quantile("0.95", "le")),
        _stat("In progress", "Deliveries running now.", "short", f"sum(dramatiq_messages_in_progress{{{ACTOR}}})"),
        _stat(
            "Ready messages",
            "Messages waiting for a worker (the backlog), every selected queue.",
            "short",
            f'sum(max by (queue) (dramatiq_queue_depth{{{QUEUE}, state="ready"}}))',
        ),
        dead_letters,
        broker,
        targets,
    ]


def _deliveries_and_errors() -> list[timeseries.Panel]:
    return [
        _timeseries(
            "Deliveries by outcome",
            "Deliveries finished per second: `success`; `retried` (enqueued again); `failed` (dead-lettered or not "
            "retried); `skipped` (by a middleware, the actor did not run).",
            "ops",
        ).with_target(
            prom(f"sum by (queue, actor, outcome) (rate({PROCESSED}{RATE}))", legend="{{queue}} {{actor}} {{outcome}}")
        ),
        _timeseries(
            "Errors by type",
            "Deliveries whose actor raised, per second, by exception class (retried attempts included; at most 50 "
            "classes per process, then `other`). Each actor's declared `throws` classes are at 0 from the start; other classes appear with their first error.",
            "ops",
        )
        .with_target(
            prom(
                f"sum by (queue, actor, error_type) (rate({ERRORS}{RATE}))",
                legend="{{queue}} {{actor}} {{error_type}}",
            )
        )
        .data_links([_failed_jobs_link(), _warning_logs_link()]),
        _timeseries("Error ratio by actor", "Errors per delivery that ran the actor.", "percentunit", span=8)
        .max(1)
        .with_target(prom(error_ratio("queue, actor"), legend="{{queue}} {{actor}}"))
        .data_links([_failed_jobs_link()]),
        _timeseries(
            "Retries",
            "Messages enqueued again for another attempt, per second (each retry counted once).",
            "ops",
            span=8,
        ).with_target(
            prom(
                f"sum by (queue, actor) (rate(dramatiq_message_retries_total{{{ACTOR}}}{RATE}))",
                legend="{{queue}} {{actor}}",
            )
        ),
        _timeseries(
            "Dead-lettered",
            "Messages moved to the dead-letter queue per second (failed for good); the reason is in the "
            "`Job dead-lettered` log line.",
            "ops",
            span=8,
        )
        .with_target(
            prom(
                f"sum by (queue, actor) (rate(dramatiq_messages_dead_lettered_total{{{ACTOR}}}{RATE}))",
                legend="{{queue}} {{actor}}",
            )
        )
        .data_links([_warning_logs_link()]),
    ]


def _processing_time() -> list[timeseries.Panel | heatmap.Panel]:
    percentiles = _timeseries(
        "Processing time percentiles",
        "Actor run time per delivery. The diamonds are exemplars: a recent job of that bucket, linked to its trace "
        "(the Prometheus datasource needs an exemplar link to Tempo on `trace_id`, see the chart README).",
        "s",
    )
    for ref, q, name in (("A", "0.5", "p50"), ("B", "0.95", "p95"), ("C", "0.99", "p99")):
        # One query carries the exemplars: they are the same for every percentile.
        percentiles.with_target(
            prom(quantile(q, "le, queue, actor"), legend=f"{name} {{{{queue}}}} {{{{actor}}}}", ref=ref).exemplar(
                ref == "A"
            )
        )
    average = _timeseries("Average processing time", "Mean actor run time per delivery.", "s").with_target(
        prom(
            f"sum by (queue, actor) (rate(dramatiq_message_processing_time_sum{{{ACTOR}}}{RATE}))\n/\n"
            f"sum by (queue, actor) (rate(dramatiq_message_processing_time_count{{{ACTOR}}}{RATE}))",
            legend="{{queue}} {{actor}}",
        )
    )
    distribution = (
        heatmap.Panel()
        .title("Processing time distribution")
        .description("Deliveries per processing-time bucket; exemplars link a bucket to the trace of a job in it.")
        .datasource(PROMETHEUS)
        .unit("s")
        .with_target(
            prom(f"sum by (le) (increase({BUCKETS}{RATE}))", legend="{{le}}")
            .format(PromQueryFormat.HEATMAP)
            .exemplar(True)
        )
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .color(heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Oranges").steps(64))
        .cell_values(heatmap.CellValues().unit("short"))
        .exemplars_color("rgba(255,0,255,0.7)")
        .scale_distribution(ScaleDistributionConfig().type(cm.ScaleDistribution.LINEAR))
        .height(8)
        .span(24)
    )
    return [percentiles, average, distribution]


def _queues_and_workers() -> list[timeseries.Panel]:
    return [
        _timeseries(
            "Queue depth by state",
            "Messages per queue: `ready` (waiting), `in_flight` (fetched by a worker), `delayed` (scheduled or "
            "waiting for a retry), `dead` (dead-lettered). Read from Redis: every pod reports the same numbers, "
            "hence `max`.",
            "short",
        ).with_target(prom(f"max by (queue, state) (dramatiq_queue_depth{{{QUEUE}}})", legend="{{queue}} {{state}}")),
        _timeseries(
            "In progress by actor", "Deliveries running now, per queue and actor, all pods.", "short"
        ).with_target(
            prom(f"sum by (queue, actor) (dramatiq_messages_in_progress{{{ACTOR}}})", legend="{{queue}} {{actor}}")
        ),
        _timeseries(
            "Estimated wait of ready messages",
            "Ready messages divided by the delivery rate (Little's law): about how long a message enqueued now "
            "waits for a worker. No value while nothing is processed (alert DramatiqQueueStalled).",
            "s",
            span=8,
        ).with_target(
            prom(
                f'max by (queue) (dramatiq_queue_depth{{{QUEUE}, state="ready"}})\n/\n'
                f'(sum by (queue) (rate(dramatiq_messages_processed_total{{{QUEUE}, outcome!="skipped"}}{RATE})) > 0)',
                legend="{{queue}}",
            )
        ),
        _timeseries(
            "Worker processes", "Dramatiq worker processes up, per scraped container.", "short", span=8
        ).with_target(prom(f"sum by (instance) (dramatiq_worker_processes{{{TARGET}}})", legend="{{instance}}")),
        _timeseries("Broker reachable", "1 when the last read of the queue depth from Redis succeeded.", "none", span=8)
        .max(1)
        .with_target(prom(f"min by (instance) (dramatiq_broker_up{{{TARGET}}})", legend="{{instance}}")),
        _timeseries(
            "Clone items",
            "WordPress items handled by clones per second, by content type and result (dry runs not counted).",
            "ops",
        ).with_target(
            prom(
                f"sum by (content_type, result) (rate(wp_clone_items_total{{{TARGET}}}{RATE}))",
                legend="{{content_type}} {{result}}",
            )
        ),
        _timeseries(
            "Spans dropped",
            "Spans that never reached the OpenTelemetry collector, per second (`export_failed`: collector down or "
            "refusing; `queue_full`: spans ended faster than they could be exported, or beyond a 64-span reserve while the collector "
            "was not answering).",
            "ops",
        ).with_target(
            prom(f"sum by (reason) (rate(worker_telemetry_spans_dropped_total{{{TARGET}}}{RATE}))", legend="{{reason}}")
        ),
    ]


def build() -> db.Dashboard:
    board = dashboard(
        METRICS_UID,
        "wp-k8s-service / Worker metrics",
        "Dramatiq worker of wp-k8s-service: deliveries, errors, retries, dead letters, processing time and queues, "
        "from the worker's Prometheus metrics. Traces and logs: the dashboard links at the top.",
    ).variables(variables())  # type: ignore[arg-type]
    return add_sections(
        board,
        [
            ("Overview", _overview()),
            ("Deliveries and errors", _deliveries_and_errors()),
            ("Processing time", _processing_time()),
            ("Queues and workers", _queues_and_workers()),
        ],
    )
