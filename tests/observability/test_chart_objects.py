"""The chart's `grafanaDashboards` ConfigMaps and `prometheusRule` PrometheusRule: off by default, shaped by
their values, valid against the strict Kubernetes and CRD schemas, and refusing bad values.

(chart/ci/observability-values.yaml also puts both through every check of tests/chart: Helm 3 and 4, three
Kubernetes versions, `helm lint --strict`.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from wp_devsupport import chart as chart_support
from wp_devsupport.observability import (
    DASHBOARD_DIR,
    alerting_rules,
    merge,
    render_rules,
)

DEFAULT_ALERTS = {
    "DramatiqQueueBacklogGrowing",
    "DramatiqQueueBacklogOld",
    "DramatiqQueueStalled",
    "DramatiqErrorRatioHigh",
    "DramatiqMessagesDeadLettered",
    "DramatiqWorkerMetricsDown",
    "DramatiqWorkerMetricsAbsent",
    "DramatiqBrokerUnreachable",
}
DASHBOARDS_ON: dict[str, Any] = {"grafanaDashboards": {"enabled": True}}


def render(values: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    return chart_support.render_chart(merge(chart_support.default_values(), values), **kwargs)


def valid(objects: list[dict[str, Any]]) -> None:
    for version in chart_support.KUBE_VERSIONS:
        schemas = chart_support.kube_schemas(version)
        problems = [str(p) for obj in objects for p in schemas.problems(obj)]
        assert not problems, "\n".join(problems)


def test_both_are_off_by_default() -> None:
    kinds = {o["kind"] for o in render({})}
    assert "ConfigMap" not in kinds
    assert "PrometheusRule" not in kinds


# ----------------------------------------------------------------------------- dashboards


def test_one_configmap_per_dashboard_holding_the_committed_json() -> None:
    config_maps = chart_support.find_all(render(DASHBOARDS_ON), "ConfigMap")
    files = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_DIR.glob("*.json")}
    assert len(config_maps) == len(files) == 3
    by_key = {}
    for cm in config_maps:
        ((key, text),) = cm["data"].items()
        by_key[key] = (cm, text)
        assert cm["metadata"]["namespace"] == chart_support.NAMESPACE
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert "annotations" not in cm["metadata"], "no folder annotation unless a folder is set"
        assert cm["metadata"]["name"] == f"{chart_support.FULLNAME}-dashboard-{key[len('wp-k8s-service-') : -5]}"
    assert sorted(by_key) == sorted(files)
    for key, (_, text) in by_key.items():
        assert text + "\n" == files[key], f"{key}: the ConfigMap must carry the file unchanged"
        json.loads(text)
    valid(config_maps)


def test_sidecar_label_namespace_and_folder_are_values() -> None:
    values = {
        "grafanaDashboards": {
            "enabled": True,
            "namespace": "monitoring",
            "label": "grafana.example.com/dashboard",
            "labelValue": "yes",
            "labels": {"team": "platform", "grafana.example.com/dashboard": "overridden?"},
            "folderAnnotation": "grafana.example.com/folder",
            "folder": "Apps/wp-k8s-service",
            "annotations": {"owner": "platform"},
        }
    }
    config_maps = chart_support.find_all(render(values), "ConfigMap")
    assert len(config_maps) == 3
    for cm in config_maps:
        meta = cm["metadata"]
        assert meta["namespace"] == "monitoring"
        assert "grafana_dashboard" not in meta["labels"]
        assert meta["labels"]["grafana.example.com/dashboard"] == "yes", "the sidecar label wins over labels"
        assert meta["labels"]["team"] == "platform"
        assert meta["annotations"] == {"grafana.example.com/folder": "Apps/wp-k8s-service", "owner": "platform"}
    valid(config_maps)


def test_dashboards_fit_a_configmap_even_with_client_side_apply() -> None:
    # 1 MiB per object; `kubectl apply` (client side) also copies it into a 256 KiB annotation.
    for path in DASHBOARD_DIR.glob("*.json"):
        assert path.stat().st_size < 200 * 1024, path.name


# ----------------------------------------------------------------------------- alert rules


def test_default_rules_select_the_release_through_the_servicemonitor_labels() -> None:
    rule = render_rules()
    assert rule["metadata"]["name"] == f"{chart_support.FULLNAME}-worker"
    assert rule["metadata"]["namespace"] == chart_support.NAMESPACE
    alerts = alerting_rules(rule)
    assert set(alerts) == DEFAULT_ALERTS
    selector = f'namespace="{chart_support.NAMESPACE}", service="{chart_support.FULLNAME}-metrics"'
    for name, alert in alerts.items():
        assert alert["expr"].count("{") == alert["expr"].count(selector), f"{name}: a selector without the release's"
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook", "runbook_url"} <= set(annotations), name
        assert annotations["runbook_url"].endswith(f"chart/README.md#{name.lower()}")
        assert alert["for"], name
    valid([rule])


def test_thresholds_durations_severities_and_labels_are_values() -> None:
    rule = render_rules(
        {
            "prometheusRule": {
                "namespace": "monitoring",
                "additionalLabels": {"release": "kube-prometheus-stack"},
                "annotations": {"owner": "platform"},
                "selector": 'job="wp-worker"',
                "alertLabels": {"team": "platform", "severity": "ignored"},
                "runbookUrlPrefix": "",
                "rules": {
                    "backlogGrowing": {"minReady": 123, "for": "7m", "severity": "info"},
                    "backlogOld": {"maxWaitSeconds": 321},
                    "errorRatio": {"threshold": 0.25},
                    "deadLettered": {"threshold": 4, "for": "2m"},
                    "stalled": {"enabled": False},
                },
                "additionalRules": [{"record": "wp:test:sum", "expr": "sum(up)"}],
            }
        }
    )
    meta = rule["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["release"] == "kube-prometheus-stack"
    assert meta["annotations"] == {"owner": "platform"}
    alerts = alerting_rules(rule)
    assert set(alerts) == DEFAULT_ALERTS - {"DramatiqQueueStalled"}
    growing = alerts["DramatiqQueueBacklogGrowing"]
    assert growing["for"] == "7m"
    assert growing["labels"] == {"severity": "info", "team": "platform"}
    assert 'state="ready"}) > 123\n' in growing["expr"]
    assert alerts["DramatiqQueueBacklogOld"]["expr"].endswith("> 321")
    assert alerts["DramatiqErrorRatioHigh"]["expr"].endswith("> 0.25")
    assert alerts["DramatiqMessagesDeadLettered"]["expr"].count("> 4") == 2
    assert alerts["DramatiqMessagesDeadLettered"]["for"] == "2m"
    for name, alert in alerts.items():
        assert "runbook_url" not in alert["annotations"], name
        assert alert["expr"].count("{") == alert["expr"].count('job="wp-worker"'), name
    rules = rule["spec"]["groups"][0]["rules"]
    assert rules[-1] == {"record": "wp:test:sum", "expr": "sum(up)"}
    valid([rule])


def test_no_absent_alert_when_keda_may_scale_the_workers_to_zero() -> None:
    keda = {"worker": {"mode": "deployment", "keda": {"enabled": True, "skipApiCheck": True, "minReplicaCount": 0}}}
    assert "DramatiqWorkerMetricsAbsent" not in alerting_rules(render_rules(keda))
    keda["worker"]["keda"]["minReplicaCount"] = 1
    assert "DramatiqWorkerMetricsAbsent" in alerting_rules(render_rules(keda))


def test_the_rule_needs_the_prometheus_operator_api() -> None:
    values = merge(chart_support.default_values(), {"prometheusRule": {"enabled": True}})
    with pytest.raises(
        chart_support.HelmError, match=r"prometheusRule\.enabled is true but the cluster does not serve"
    ):
        chart_support.render_chart(values, api_versions=())
    kinds = {o["kind"] for o in chart_support.render_chart(values, api_versions=["monitoring.coreos.com/v1"])}
    assert "PrometheusRule" in kinds


BAD_VALUES = {
    "rule-typo": ({"prometheusRule": {"rules": {"errorRatio": {"treshold": 0.2}}}}, r"treshold"),
    "unknown-rule": ({"prometheusRule": {"rules": {"cpuHigh": {"enabled": True}}}}, r"cpuHigh"),
    "ratio-above-one": (
        {"prometheusRule": {"rules": {"errorRatio": {"threshold": 5}}}},
        r"/prometheusRule/rules/errorRatio/threshold",
    ),
    "bad-duration": (
        {"prometheusRule": {"rules": {"stalled": {"for": "15 minutes"}}}},
        r"/prometheusRule/rules/stalled/for",
    ),
    "selector-with-braces": ({"prometheusRule": {"selector": '{job="x"}'}}, r"/prometheusRule/selector"),
    "dashboard-label-value": (
        {"grafanaDashboards": {"labelValue": "not a label value!"}},
        r"/grafanaDashboards/labelValue",
    ),
    "dashboards-typo": ({"grafanaDashboards": {"enable": True}}, r"additional properties 'enable' not allowed"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_fail_with_a_clear_message(case: str) -> None:
    extra, message = BAD_VALUES[case]
    with pytest.raises(chart_support.HelmError, match=message):
        render(extra)
