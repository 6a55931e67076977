"""What the three dashboards share: datasource variables, uids, links and panel helpers.

Every datasource reference is a dashboard variable (`${datasource}`, `${tempo}`, `${loki}`), never a
uid of one Grafana, so the JSON imports anywhere; every panel gets a unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import loki, prometheus, tempo
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

#: Dashboard uids: fixed, so that the dashboards (and the datasource settings in chart/README.md) can
#: link to each other.
METRICS_UID = "wp-k8s-service-worker"
TRACES_UID = "wp-k8s-service-traces"
LOGS_UID = "wp-k8s-service-logs"

TAGS = ["wp-k8s-service", "dramatiq"]

PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TEMPO = dm.DataSourceRef(type_val="tempo", uid="${tempo}")
LOKI = dm.DataSourceRef(type_val="loki", uid="${loki}")

#: The worker's actors and queues (worker_app/queues.py, worker_app/tasks.py).
QUEUES = ("clone-queue", "ping")
ACTORS = ("clone_wordpress", "ping")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def datasource_variable(name: str, plugin: str, label: str) -> db.DatasourceVariable:
    return db.DatasourceVariable(name).label(label).type(plugin).description(f"The {label} datasource.")


def all_option() -> dm.VariableOption:
    return dm.VariableOption(selected=True, text="All", value="$__all")


def custom_variable(name: str, label: str, values: Sequence[str], description: str) -> db.CustomVariable:
    """A multi-value list of fixed values, `All` (`.*`) selected."""
    return (
        db.CustomVariable(name)
        .label(label)
        .description(description)
        .values(",".join(values))
        .options([dm.VariableOption(selected=False, text=v, value=v) for v in values])
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(all_option())
    )


def textbox_variable(name: str, label: str, default: str, description: str) -> db.TextBoxVariable:
    return (
        db.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(default)
        .current(dm.VariableOption(selected=True, text=default, value=default))
    )


def dashboard(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .links(
            [
                db.DashboardLink("wp-k8s-service")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["wp-k8s-service"])
                .as_dropdown(False)
                .include_vars(True)
                .keep_time(True)
                .icon("external link")
                .tooltip("The other wp-k8s-service dashboards, with this time range and these variables")
                .target_blank(False)
            ]
        )
    )


def link(title: str, url: str) -> db.DashboardLink:
    """A data link (panel field config) to `url`, in the same tab."""
    return db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url).target_blank(False)


def dashboard_url(uid: str, *variables: tuple[str, str]) -> str:
    """URL of another of the dashboards, keeping the time range, with `var-<name>=<value>` set."""
    query = "".join(f"&var-{name}={value}" for name, value in variables)
    return f"/d/{uid}?${{__url_time_range}}{query}"


def prom(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().ref_id(ref).expr(expr).legend_format(legend).datasource(PROMETHEUS)
    return query.instant() if instant else query.range()


def traceql(query: str, ref: str = "A", limit: int = 50, spans_per_set: int = 3) -> tempo.TempoQuery:
    return (
        tempo.TempoQuery()
        .ref_id(ref)
        .query_type("traceql")
        .query(query)
        .limit(limit)
        .spss(spans_per_set)
        .datasource(TEMPO)
    )


def logql(expr: str, ref: str = "A", legend: str = "") -> loki.Dataquery:
    query = loki.Dataquery().ref_id(ref).expr(expr).datasource(LOKI)
    return query.legend_format(legend) if legend else query


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def override_links(
    field: str, links: Sequence[tuple[str, str]]
) -> tuple[dm.MatcherConfig, list[dm.DynamicConfigValue]]:
    """A field override that puts data links on one field (a table column)."""
    return (
        dm.MatcherConfig(id_val="byName", options=field),
        [dm.DynamicConfigValue(id_val="links", value=[{"title": t, "url": u} for t, u in links])],
    )


def add_sections(board: db.Dashboard, sections: Sequence[tuple[str, Sequence[Builder[Any]]]]) -> db.Dashboard:
    """Rows (expanded) with their panels after them, numbered in order: ids are stable between runs."""
    number = 0
    for title, panels in sections:
        number += 1
        board.with_row(db.Row(title).id(number).collapsed(False))
        for panel in panels:
            number += 1
            panel.id(number)  # type: ignore[attr-defined]
            board.with_panel(panel)
    return board
