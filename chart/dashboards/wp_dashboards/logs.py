"""Worker logs: the JSON log lines of the worker containers (Loki), filtered by level, actor, trace_id.

The worker writes one JSON object per line (README, "Tracing conventions"): `level`, `message`,
`logger`, and inside a job `actor`, `message_id`, `queue`, `trace_id`, `span_id`. Streams are selected by
the labels every Kubernetes log agent (Grafana Alloy, Promtail, the OpenTelemetry Collector's Loki
exporter) sets: `namespace` and `container` (the chart names the worker container `worker`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import logs, table, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig, VizLegendOptions
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    ACTORS,
    LOG_LEVELS,
    LOGS_UID,
    LOKI,
    TRACES_UID,
    add_sections,
    all_option,
    custom_variable,
    dashboard,
    dashboard_url,
    datasource_variable,
    logql,
    override_links,
    textbox_variable,
)

STREAM = '{namespace=~"$namespace", container="$container"}'
#: Every filter of the dashboard, after the JSON parser.
FILTERS = '| level=~"$level" | actor=~"$actor" | trace_id=~"$trace_id"'
LINES = f'{STREAM} |= "$search" | json {FILTERS}'
#: Columns of the log tables, in order.
COLUMNS = ("Time", "level", "actor", "message", "error_type", "trace_id", "message_id", "queue")


def variables() -> list[db.DatasourceVariable | db.QueryVariable | db.CustomVariable | db.TextBoxVariable]:
    namespace = (
        db.QueryVariable("namespace")
        .label("Namespace")
        .description("Kubernetes namespace of the worker pods (Loki's `namespace` label).")
        .datasource(LOKI)
        .query('label_values({container="$container"}, namespace)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(all_option())
    )
    return [
        datasource_variable("loki", "loki", "Loki"),
        textbox_variable(
            "container",
            "Container",
            "worker",
            "Loki `container` label of the worker (the chart's container name is `worker` in both modes).",
        ),
        namespace,
        custom_variable("level", "Level", LOG_LEVELS, "Log level (`level` field)."),
        custom_variable("actor", "Actor", ACTORS, "Dramatiq actor (`actor` field, set on lines logged inside a job)."),
        textbox_variable("trace_id", "Trace ID", ".*", "Regular expression on the `trace_id` field (`.*`: any)."),
        textbox_variable("search", "Search", "", "Text the line must contain (a line filter before parsing)."),
    ]


def _trace_links() -> tuple[dm.MatcherConfig, list[dm.DynamicConfigValue]]:
    return override_links(
        "trace_id",
        [
            ("Trace", dashboard_url(TRACES_UID, ("trace_id", "${__value.raw}"))),
            ("Every line of this trace", dashboard_url(LOGS_UID, ("trace_id", "${__value.raw}"))),
        ],
    )


def _table(title: str, description: str, expr: str, span: int = 24) -> table.Panel:
    matcher, properties = _trace_links()
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(LOKI)
        .unit("none")
        .with_target(logql(expr))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="extractFields",
                options={"source": "Line", "format": "json", "replace": False, "keepTime": True},
            )
        )
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "includeByName": dict.fromkeys(COLUMNS, True),
                    "indexByName": {name: i for i, name in enumerate(COLUMNS)},
                },
            )
        )
        .align(cm.FieldTextAlignment.AUTO)
        .inspect(False)
        .with_override(matcher, properties)
        .height(10)
        .span(span)
    )


def _volume(title: str, description: str, expr: str, legend: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(LOKI)
        .unit("short")
        .min(0)
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(StackingConfig().mode(cm.StackingMode.NORMAL))
        .legend(
            VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .with_target(logql(expr, legend=legend))
        .height(7)
        .span(12)
    )


def build() -> db.Dashboard:
    board = dashboard(
        LOGS_UID,
        "wp-k8s-service / Worker logs",
        "JSON log lines of the wp-k8s-service worker from Loki, by level, actor and trace; trace_id links open the "
        "trace.",
    ).variables(variables())  # type: ignore[arg-type]
    volume = [
        _volume(
            "Log lines by level",
            "Log lines per interval, by level.",
            f'sum by (level) (count_over_time({STREAM} |= "$search" | json | __error__="" {FILTERS} [$__interval]))',
            "{{level}}",
        ),
        _volume(
            "Warnings and errors by actor",
            "WARNING, ERROR and CRITICAL lines per interval, by actor (`none`: outside a job).",
            f'sum by (actor) (count_over_time({STREAM} |= "$search" | json | __error__="" '
            f'| level=~"WARNING|ERROR|CRITICAL" | actor=~"$actor" | trace_id=~"$trace_id" [$__interval]))',
            "{{actor}}",
        ),
    ]
    lines = (
        logs.Panel()
        .title("Log lines")
        .description(
            "The worker's lines, newest first. With the Loki datasource's derived field on `trace_id` (chart README) "
            "each line links to its trace."
        )
        .datasource(LOKI)
        .unit("none")
        .with_target(logql(LINES))
        .show_time(True)
        .wrap_log_message(True)
        .prettify_log_message(False)
        .enable_log_details(True)
        .sort_order(cm.LogsSortOrder.DESCENDING)
        .dedup_strategy(cm.LogsDedupStrategy.NONE)
        .height(12)
        .span(24)
    )
    jobs = _table(
        "Log lines of jobs",
        "Lines logged inside a job, with their fields; trace_id opens the trace.",
        f'{LINES} | actor!=""',
        span=12,
    )
    dead = _table(
        "Dead-lettered jobs",
        "Jobs that failed for good (`Job dead-lettered` lines, with the reason and the exception class).",
        f'{STREAM} |= "Job dead-lettered" | json | actor=~"$actor" | trace_id=~"$trace_id"',
        span=12,
    )
    return add_sections(board, [("Volume", volume), ("Lines", [lines, jobs, dead])])
