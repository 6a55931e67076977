"""Monitoring: the metrics Service and the ServiceMonitor that scrapes the worker, wherever it runs."""

from __future__ import annotations

import pytest

from wp_devsupport.chart import FULLNAME, NAMESPACE, find, find_all, render_chart, render_scenario, with_values


class TestServiceMonitor:
    @pytest.mark.parametrize(
        ("scenario", "component"), [("servicemonitor", "api"), ("worker-deployment-keda", "worker")]
    )
    def test_scrapes_the_worker_metrics(self, scenario: str, component: str) -> None:
        objects = render_scenario(scenario)
        monitor = find(objects, "ServiceMonitor")
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
        services = [
            s
            for s in find_all(objects, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert len(services) == 1
        (service,) = services
        assert service["metadata"]["name"] == f"{FULLNAME}-metrics"
        assert service["spec"]["clusterIP"] == "None"
        assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
        # The metrics Service selects the pods that run the worker: API pods in sidecar mode.
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == component
        api_service = find(objects, "Service", FULLNAME)
        assert [p["name"] for p in api_service["spec"]["ports"]] == ["http"], "metrics stay off the API Service"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}

    def test_endpoint_settings(self) -> None:
        monitor = find(render_scenario("servicemonitor"), "ServiceMonitor")
        (endpoint,) = monitor["spec"]["endpoints"]
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert (endpoint["interval"], endpoint["scrapeTimeout"], endpoint["honorLabels"]) == ("15s", "5s", True)
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
        assert endpoint["relabelings"][0]["targetLabel"] == "node"
        assert endpoint["metricRelabelings"][0]["action"] == "drop"

    @pytest.mark.parametrize(("interval", "timeout"), [("30s", "30s"), ("1m", "59s"), ("2m", "1m30s"), ("1h", "500ms")])
    def test_scrape_timeout_up_to_the_interval_renders(self, interval: str, timeout: str) -> None:
        values = with_values({"serviceMonitor": {"enabled": True, "interval": interval, "scrapeTimeout": timeout}})
        (endpoint,) = find(render_chart(values), "ServiceMonitor")["spec"]["endpoints"]
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == (interval, timeout)

    def test_off_by_default(self) -> None:
        assert not find_all(render_scenario("defaults"), "ServiceMonitor")
