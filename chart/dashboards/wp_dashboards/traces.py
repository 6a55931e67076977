"""Worker traces: TraceQL searches for the worker's `process <queue>` spans (Tempo).

The span names and attributes are the README's tracing conventions: a CONSUMER span `process <queue>`
per delivery with `messaging.operation.type=process`, `messaging.destination.name` (the queue),
`dramatiq.actor.name`, `dramatiq.message.retries` and `dramatiq.message.outcome`; status ERROR only when
a job fails for good. Resource attributes come from the chart (`service.name`, `k8s.namespace.name`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    LOGS_UID,
    QUEUES,
    TEMPO,
    TRACES_UID,
    add_sections,
    all_option,
    custom_variable,
    dashboard,
    dashboard_url,
    datasource_variable,
    override_links,
    textbox_variable,
    traceql,
)

#: The worker's deliveries, filtered by the dashboard's variables.
JOBS = (
    'resource.service.name = "$service" && resource.k8s.namespace.name =~ "${namespace:regex}" && '
    'span.messaging.operation.type = "process" && span.messaging.destination.name =~ "${queue:regex}"'
)


def variables() -> list[db.DatasourceVariable | db.QueryVariable | db.CustomVariable | db.TextBoxVariable]:
    namespace = (
        db.QueryVariable("namespace")
        .label("Namespace")
        .description("Kubernetes namespace of the worker (the `k8s.namespace.name` resource attribute the chart sets).")
        .datasource(TEMPO)
        .query(
            {
                "type": 1,
                "label": "resource.k8s.namespace.name",
                "refId": "TempoDatasourceVariableQueryEditor-VariableQuery",
            }
        )
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(all_option())
    )
    return [
        datasource_variable("tempo", "tempo", "Tempo"),
        textbox_variable(
            "service",
            "Service",
            "wp-k8s-service-worker",
            "`service.name` of the worker's spans (chart value `otel.worker.serviceName`).",
        ),
        namespace,
        custom_variable("queue", "Queue", QUEUES, "Dramatiq queue (`messaging.destination.name`)."),
        textbox_variable(
            "min_duration",
            "Slower than",
            "30s",
            "Deliveries slower than this are listed under Slowest jobs (TraceQL duration: 500ms, 30s, 5m).",
        ),
        textbox_variable(
            "trace_id",
            "Trace ID",
            "",
            "Trace shown in the Trace panel (the logs dashboard's trace_id links set it).",
        ),
    ]


def _search(title: str, description: str, query: str) -> table.Panel:
    trace_links = [
        ("Open this trace here", dashboard_url(TRACES_UID, ("trace_id", "${__value.raw}"))),
        ("Log lines of this trace", dashboard_url(LOGS_UID, ("trace_id", "${__value.raw}"))),
    ]
    matcher, properties = override_links("traceID", trace_links)
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(TEMPO)
        .unit("ms")
        .with_target(traceql(f"{{ {query} }}"))
        .align(cm.FieldTextAlignment.AUTO)
        .inspect(False)
        .with_override(matcher, properties)
        .height(9)
        .span(12)
    )


def _trace_view() -> db.Panel:
    return (
        db.Panel()
        .type("traces")
        .title("Trace")
        .description("The trace whose id is in the Trace ID variable (set by the links of the tables and logs).")
        .datasource(TEMPO)
        .unit("none")
        .with_target(traceql("${trace_id}"))
        .height(14)
        .span(24)
    )


def build() -> db.Dashboard:
    board = dashboard(
        TRACES_UID,
        "wp-k8s-service / Worker traces",
        "Traces of the wp-k8s-service worker's jobs (`process <queue>` spans) from Tempo: recent, failed, "
        "retried and slowest deliveries, and one trace in full.",
    ).variables(variables())  # type: ignore[arg-type]
    searches = [
        _search(
            "Recent jobs",
            "Deliveries of the selected queues (`process <queue>` consumer spans) with their trace: producer, "
            "consumer, clone phases and HTTP calls.",
            JOBS,
        ),
        _search(
            "Failed jobs",
            "Deliveries that failed for good (status ERROR: dead-lettered or not retried); `error.type` names the "
            "exception.",
            f"{JOBS} && status = error",
        ),
        _search(
            "Retried deliveries",
            "Attempts that failed and were enqueued again (`dramatiq.message.outcome = retried`); the exception is a "
            "span event. The next attempt links back to this span.",
            f'{JOBS} && span.dramatiq.message.outcome = "retried"',
        ),
        _search(
            "Slowest jobs",
            "Deliveries that took longer than the Slower than variable.",
            f"{JOBS} && duration > $min_duration",
        ),
    ]
    return add_sections(board, [("Jobs", searches), ("Trace", [_trace_view()])])
