"""Helpers of the observability tests: the generated dashboards, the chart's rendered alert rules, and the
PromQL of both (the queries the live test runs against Prometheus).

The chart helpers are wp_devsupport.chart (the very module the chart tests use). The dashboards are read
as the chart ships them (chart/dashboards/*.json); the generator (chart/dashboards/wp_dashboards) is run
by the tests as a command, like `make dashboards` runs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import chart as chart_support
from .repo import REPO

DASHBOARD_DIR = REPO / "chart" / "dashboards"
RULE_TESTS_DIR = REPO / "tests" / "observability" / "rules"

#: Chart values that turn the PrometheusRule on (rendered without a cluster).
RULE_VALUES: dict[str, Any] = {"prometheusRule": {"enabled": True, "skipApiCheck": True}}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


#: The dashboards-as-code (Grafana foundation SDK), next to the JSON it writes; run as
#: `python -m wp_dashboards` from DASHBOARD_DIR (`make dashboards`).
DASHBOARD_GENERATOR = "wp_dashboards"


def run_dashboard_generator(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m wp_dashboards ARGS` in chart/dashboards, as `make dashboards` runs it (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", DASHBOARD_GENERATOR, *args],
        cwd=DASHBOARD_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def committed_dashboards() -> dict[str, dict[str, Any]]:
    """chart/dashboards/*.json, parsed, by file name."""
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but rows (also those inside collapsed rows)."""
    panels = []
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL expression of a dashboard: a panel's target or a query variable."""

    dashboard: str
    panel: str
    ref: str
    expr: str
    exemplar: bool = False

    @property
    def key(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def prometheus_queries(boards: dict[str, dict[str, Any]]) -> list[PanelQuery]:
    queries = []
    for name, board in boards.items():
        for panel in all_panels(board):
            for target in panel.get("targets", []):
                if target.get("datasource", panel.get("datasource", {})).get("type") == "prometheus":
                    queries.append(
                        PanelQuery(name, panel["title"], target["refId"], target["expr"], bool(target.get("exemplar")))
                    )
    return queries


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$", re.S)


@dataclass(frozen=True)
class VariableQuery:
    dashboard: str
    name: str
    selector: str | None
    label: str

    @property
    def key(self) -> str:
        return f"{self.dashboard} / ${self.name}"


def prometheus_variables(boards: dict[str, dict[str, Any]]) -> list[VariableQuery]:
    variables = []
    for name, board in boards.items():
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query" and variable.get("datasource", {}).get("type") == "prometheus":
                match = _LABEL_VALUES.match(variable["query"])
                assert match, f"{name} ${variable['name']}: not a label_values() query: {variable['query']}"
                variables.append(VariableQuery(name, variable["name"], match["selector"], match["label"]))
    return variables


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's variables (`$name`, `${name}`, `${name:format}`) the way Grafana would."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        if name not in values:
            raise KeyError(f"no test value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(?P<braced>\w+)(?::\w+)?\}|\$(?P<plain>\w+)", replace, expr)


# ----------------------------------------------------------------------------- rendered rules


def render_rules(values: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """The chart's PrometheusRule (RULE_VALUES + `values` on top of chart/ci/defaults-values.yaml)."""
    full = merge(merge(chart_support.default_values(), RULE_VALUES), values or {})
    (rule,) = chart_support.render_chart(full, show_only="templates/prometheusrule.yaml", **kwargs)
    return rule


def alerting_rules(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}


def write_rule_file(rule: dict[str, Any], path: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file (what the operator gives Prometheus)."""
    import yaml

    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False), encoding="utf-8")
    return path


__all__ = [
    "DASHBOARD_DIR",
    "DASHBOARD_GENERATOR",
    "REPO",
    "RULE_TESTS_DIR",
    "PanelQuery",
    "VariableQuery",
    "alerting_rules",
    "all_panels",
    "committed_dashboards",
    "merge",
    "prometheus_queries",
    "prometheus_variables",
    "render_rules",
    "run_dashboard_generator",
    "substitute",
    "write_rule_file",
]
