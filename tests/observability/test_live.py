"""Every PromQL expression of the dashboards and of the chart's alert rules, run against the real Prometheus
of the e2e stack (wp_devsupport.stack: Redis, OpenTelemetry Collector, Prometheus 3.16 with exemplar storage,
the worker) while it processes real jobs, plus a real clone between two real WordPress sites.

Prometheus scrapes the worker twice: as the stack configures it (job `wp-k8s-service-worker`, no namespace
label, like a Prometheus outside Kubernetes) and with the labels the Prometheus Operator gives a
ServiceMonitor target (`namespace="wp-ns"`, `service="wp-wp-k8s-service-metrics"`, ...). Dashboard queries run
in both flavours (Grafana's variables replaced by what Grafana would send); the chart's rules are rendered
with their default selector (release `wp` in `wp-ns`) and loaded into that Prometheus, with every `for` at 0s
and the backlog wait limit lowered so that a test-sized backlog is enough.

The run, in phases (each recorded once, then asserted by the tests below):
1. healthy: successful pings only. Every dashboard query returns data, except those listed in
   EMPTY_WHEN_HEALTHY with the reason; no alert fires.
2. backlog: both worker threads held by slow pings, more pings and clones queued behind them.
3. failures: invalid pings (permanent failure, dead-lettered), clones of an unreachable site (a retry,
   then a dead letter), and a real clone. Every dashboard query returns data; the failure panels are > 0.
4. the collector stopped: spans of new jobs are dropped and counted.
5. Redis stopped; 6. the worker stopped (its target still discovered).
Each alert must fire in the phase made for it (and return data there as an expression).
"""

from __future__ import annotations

import json
import math
import re
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from wp_devsupport.observability import (
    PanelQuery,
    VariableQuery,
    alerting_rules,
    committed_dashboards,
    prometheus_queries,
    prometheus_variables,
    render_rules,
    substitute,
    write_rule_file,
)
from wp_devsupport.ports import free_port
from wp_devsupport.processes import wait_until
from wp_devsupport.stack import Stack, require_tools
from wp_devsupport.wordpress.sites import running_sites
from wp_devsupport.worker import produce

pytestmark = pytest.mark.integration

PLAIN_JOB = "wp-k8s-service-worker"  # the stack's own scrape job
K8S_LABELS = {
    "namespace": "wp-ns",
    "service": "wp-wp-k8s-service-metrics",
    "pod": "wp-wp-k8s-service-7d9f8-abcde",
    "container": "worker",
    "endpoint": "metrics",
}
K8S_JOB = K8S_LABELS["service"]  # the operator's job label: the Service's name

#: What Grafana sends for the variables, per flavour. All of $namespace is `.*`; All of a variable without
#: a custom all value is the regex of its values.
FLAVOURS = {
    "no namespace label": {"namespace": ".*", "job": PLAIN_JOB, "queue": ".*", "actor": ".*"},
    "kubernetes labels": {
        "namespace": K8S_LABELS["namespace"],
        "job": K8S_JOB,
        "queue": "(clone-queue|ping)",
        "actor": "(clone_wordpress|ping)",
    },
}
#: Depth queries also run with both scrape jobs selected: the same worker scraped twice, like two pods.
BOTH_TARGETS = "both targets"
BOTH_TARGETS_VALUES = {"namespace": ".*", "job": f"({PLAIN_JOB}|{K8S_JOB})", "queue": ".*", "actor": ".*"}
#: Every target's own depth samples, read at the instant the both-targets panels are (the oracle for them).
RAW_DEPTH = f'dramatiq_queue_depth{{job=~"{PLAIN_JOB}|{K8S_JOB}"}}'
SCRAPE_TIMEOUT_SECONDS = 1.0  # both scrape jobs: 1 s interval, 1 s timeout while Redis is up
RATE_INTERVAL = "1m"  # $__rate_interval: 4 x the 1 s scrape interval at least; the run fits in it

METRICS = "wp-k8s-service-worker-metrics.json"
#: Queries that return nothing after a healthy run, and why. The failure phase must fill each of them.
EMPTY_WHEN_HEALTHY = {
    f"{METRICS} / Clone items / A": "wp_clone_items_total is created by the first clone that copies or skips "
    "items: the healthy run has no clone",
}
#: Queries that must be above zero once jobs failed (phase failures).
POSITIVE_AFTER_FAILURES = {
    f"{METRICS} / Error ratio / A",
    f"{METRICS} / Error ratio by actor / A",
    f"{METRICS} / Errors by type / A",
    f"{METRICS} / Retries / A",
    f"{METRICS} / Dead-lettered / A",
    f"{METRICS} / Dead letters / A",
    f"{METRICS} / Deliveries / A",
    f"{METRICS} / Clone items / A",
}
#: The panels that read the queue depth from Redis (every target reports the same numbers).
DEPTH_QUERIES = {
    f"{METRICS} / Ready messages / A",
    f"{METRICS} / Dead letters / A",
    f"{METRICS} / Queue depth by state / A",
}
#: Queries that must be above zero while the backlog waits (phase backlog).
POSITIVE_DURING_BACKLOG = {
    f"{METRICS} / In progress / A",
    f"{METRICS} / In progress by actor / A",
    f"{METRICS} / Ready messages / A",
    f"{METRICS} / Estimated wait of ready messages / A",
}
#: Alert -> (phase where it must fire, labels it must carry there).
FIRES_IN = {
    "DramatiqQueueBacklogGrowing": ("backlog", {"queue": "ping"}),
    "DramatiqQueueBacklogOld": ("backlog", {"queue": "ping"}),
    "DramatiqQueueStalled": ("backlog", {"queue": "clone-queue"}),
    "DramatiqErrorRatioHigh": ("failures", {"queue": "clone-queue", "actor": "clone_wordpress"}),
    "DramatiqMessagesDeadLettered": ("failures", {"queue": "clone-queue"}),
    "DramatiqBrokerUnreachable": ("redis stopped", {"pod": K8S_LABELS["pod"]}),
    "DramatiqWorkerMetricsAbsent": ("worker stopped", {"namespace": "wp-ns"}),
    "DramatiqWorkerMetricsDown": ("worker stopped", {"pod": K8S_LABELS["pod"]}),
}
#: The live rules: the chart's defaults, `for: 0s`, and a backlog wait limit a few dozen pings exceed.
LIVE_RULE_VALUES: dict[str, Any] = {
    "prometheusRule": {
        "rules": {
            name: {"for": "0s"}
            for name in (
                "backlogGrowing",
                "backlogOld",
                "stalled",
                "errorRatio",
                "deadLettered",
                "metricsDown",
                "metricsAbsent",
                "brokerUnreachable",
            )
        }
    }
}
LIVE_RULE_VALUES["prometheusRule"]["rules"]["backlogOld"]["maxWaitSeconds"] = 60

HOLD_SECONDS = 10
PINGS_HEALTHY, PINGS_BEHIND, CLONES_BEHIND = 30, 30, 12
INVALID_PINGS, LATE_CLONES = (3, 3), 3


@dataclass
class Phase:
    name: str
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # query key -> result
    firing: list[dict[str, str]] = field(default_factory=list)  # labels of ALERTS{alertstate="firing"}


@dataclass
class Run:
    stack: Stack
    queries: dict[str, dict[str, str]]  # flavour -> key -> PromQL
    variables: list[VariableQuery]
    alerts: dict[str, str]  # alert -> expr
    phases: dict[str, Phase] = field(default_factory=dict)
    label_values: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # flavour -> variable -> values
    exemplars: dict[str, set[str]] = field(default_factory=dict)  # "flavour: query key" -> trace ids

    def record(self, name: str) -> Phase:
        phase = Phase(name)
        prometheus = self.stack.prometheus
        # The depth moves while clones retry: the both-targets panels and the raw samples they are checked
        # against are read at one instant (the phase's), once every scrape started before it is stored, so
        # every one of those queries sees the same samples.
        depth_at = time.time()
        for flavour, queries in self.queries.items():
            if flavour != BOTH_TARGETS:
                for key, expr in queries.items():
                    phase.results[f"{flavour}: {key}"] = prometheus.query(expr)
        time.sleep(max(0.0, depth_at + 2 * SCRAPE_TIMEOUT_SECONDS - time.time()))
        for key, expr in self.queries[BOTH_TARGETS].items():
            phase.results[f"{BOTH_TARGETS}: {key}"] = prometheus.query(expr, at=depth_at)
        phase.results[RAW_DEPTH] = prometheus.query(RAW_DEPTH, at=depth_at)
        for alert, expr in self.alerts.items():
            phase.results[f"alert: {alert}"] = prometheus.query(expr)
        phase.firing = [r["metric"] for r in prometheus.query('ALERTS{alertstate="firing"}')]
        self.phases[name] = phase
        return phase

    def firing(self, alert: str, **labels: str) -> bool:
        found = [
            r["metric"]
            for r in self.stack.prometheus.query(f'ALERTS{{alertstate="firing", alertname="{alert}"}}')
            if all(r["metric"].get(k) == v for k, v in labels.items())
        ]
        return bool(found)


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(v) for v in _values(result))


def _positive(result: list[dict[str, Any]]) -> bool:
    return any(v > 0 and math.isfinite(v) for v in _values(result))


# ----------------------------------------------------------------------------- the run


def _prometheus_config(stack: Stack, rules: Path, kubernetes_target: bool, kubernetes_interval: str = "1s") -> float:
    """Rewrite the stack Prometheus's configuration (same file it was started with) and reload it;
    returns when the reload was asked for (`time.time()`).

    `kubernetes_interval` is also the scrape timeout of the kubernetes-labelled job: without Redis, /metrics
    answers in about 4 s (the queue-depth read gives up slowly), more than a 1 s scrape allows.
    """
    command = stack.prometheus.process.command
    config = Path(next(a.split("=", 1)[1] for a in command if a.startswith("--config.file=")))
    target = f"127.0.0.1:{stack.worker.metrics_port}"
    jobs: list[dict[str, Any]] = [{"job_name": PLAIN_JOB, "static_configs": [{"targets": [target]}]}]
    if kubernetes_target:
        jobs.append(
            {
                "job_name": K8S_JOB,
                "scrape_interval": kubernetes_interval,
                "scrape_timeout": kubernetes_interval,
                "static_configs": [{"targets": [target], "labels": K8S_LABELS}],
            }
        )
    document = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
        "rule_files": [str(rules)],
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    stack.prometheus.process.signal(signal.SIGHUP)
    return time.time()


def _record_after_reload(run: Run, phase: str, alerts: Sequence[str], reloaded: float, old_interval: float) -> None:
    """Record `phase` once `alerts` fire and the scrape loop a reload replaced has settled.

    A reload that changes a job's interval replaces its scrape loop. The old loop writes staleness
    markers for the target's series, stamped with its next tick (up to `old_interval` after the reload)
    but appended only about two intervals later; they hide what the new loop stored before that tick
    until its next scrape. A phase recorded on a firing alert alone could land in that gap and find the
    alert's expression empty. So: wait until the markers are in, then until the alerts fire and their
    expressions return something.

    :param reloaded: when the reload was asked for (`_prometheus_config`; Prometheus applies it within a second).
    """
    stack = run.stack
    settled = reloaded + 1.0 + 2.2 * old_interval + 0.5

    def ready() -> bool:
        return time.time() > settled and all(
            run.firing(alert) and stack.prometheus.query(run.alerts[alert]) for alert in alerts
        )

    _wait_for_alerts(run, ready, 30 + 3 * old_interval, f"{', '.join(alerts)} firing after the reload")
    run.record(phase)


def _rules_loaded(stack: Stack) -> int:
    groups = requests.get(f"{stack.prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    return sum(len(g["rules"]) for g in groups)


def _k8s_target_up(stack: Stack) -> bool:
    return stack.prometheus.value(f'up{{job="{K8S_JOB}"}}') == 1.0


def _wait_for(stack: Stack, promql: str, predicate: Any, timeout: float, message: str) -> None:
    def check() -> bool:
        result = stack.prometheus.query(promql)
        return bool(predicate(_values(result)))

    wait_until(check, timeout, interval=0.5, message=message)


@pytest.fixture(scope="module")
def wordpress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two real WordPress sites (wp_devsupport.wordpress.sites, as in tests/clone)."""
    with running_sites(tmp_path_factory.mktemp("wordpress")) as sites:
        yield sites


@pytest.fixture(scope="module")
def run(wordpress: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    try:
        require_tools("otelcol", "prometheus")
    except FileNotFoundError as error:
        pytest.fail(str(error))
    workdir = tmp_path_factory.mktemp("observability")
    unreachable = f"http://127.0.0.1:{free_port()}"  # allowed, nothing listens: connection refused
    target = wordpress.target
    credentials = f"{target.username}:{target.application_password}"
    stack = Stack(
        workdir / "stack",
        processes=1,
        threads=2,
        CLONE_ALLOWED_HOSTS="127.0.0.1",
        CLONE_ALLOWED_NETWORKS="127.0.0.0/8",
        CLONE_HTTP_RETRIES="0",
        WORKER_SHUTDOWN_TIMEOUT="3",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",  # a stopped collector costs the exporter 2 s, not 10
        **{
            f"WORDPRESS_AUTH_127_0_0_1_{target.port}": credentials,
            f"WORDPRESS_AUTH_127_0_0_1_{unreachable.rsplit(':', 1)[1]}": credentials,
        },
    )
    try:
        boards = committed_dashboards()
        panel_queries: list[PanelQuery] = prometheus_queries(boards)
        queries = {
            flavour: {q.key: substitute(q.expr, {**values, "__rate_interval": RATE_INTERVAL}) for q in panel_queries}
            for flavour, values in FLAVOURS.items()
        }
        queries[BOTH_TARGETS] = {
            q.key: substitute(q.expr, {**BOTH_TARGETS_VALUES, "__rate_interval": RATE_INTERVAL})
            for q in panel_queries
            if q.key in DEPTH_QUERIES
        }
        rule = render_rules(LIVE_RULE_VALUES)
        alerts = {name: r["expr"] for name, r in alerting_rules(rule).items()}
        rules_file = write_rule_file(rule, workdir / "rules.yaml")
        _prometheus_config(stack, rules_file, kubernetes_target=True)
        wait_until(lambda: _rules_loaded(stack) == len(alerts), 30, interval=0.5, message="rules loaded")
        wait_until(lambda: _k8s_target_up(stack), 30, interval=0.5, message="kubernetes-labelled target up")
        result = Run(stack, queries, prometheus_variables(boards), alerts)
        try:
            _healthy(result)
            _backlog(result, wordpress.source.url, unreachable)
            _failures(result, unreachable, wordpress)
            _collector_down(result)
            _outages(result, rules_file)
        except Exception as error:
            tails = "".join(
                f"\n--- {name} (last lines)\n{path.read_text(encoding='utf-8', errors='replace')[-4000:]}"
                for name, path in stack.logs().items()
            )
            raise RuntimeError(f"the live run failed in a phase: {error}{tails}") from error
        yield result
    finally:
        stack.stop()


def _send(run: Run, jobs: list[dict[str, Any]]) -> list[str]:
    return produce(run.stack.producer_env(), jobs)


def _healthy(run: Run) -> None:
    prometheus = f'sum(dramatiq_messages_processed_total{{job="{PLAIN_JOB}", outcome="success"}})'
    # Two waves a few scrapes apart, so that rates see the counters grow after they appeared.
    for wave in range(2):
        _send(run, [{"actor": "ping", "args": [f"healthy-{wave}-{i}"]} for i in range(PINGS_HEALTHY // 2)])
        time.sleep(2.5)
    _wait_for(run.stack, prometheus, lambda v: v == [PINGS_HEALTHY], 30, "healthy pings scraped")
    time.sleep(3)  # both scrape jobs have seen the final numbers a few times
    run.record("healthy")
    for flavour, values in FLAVOURS.items():
        for variable in run.variables:
            # What Grafana asks for label_values(selector, label).
            selector = substitute(variable.selector, values) if variable.selector else None
            params = {"match[]": selector} if selector else {}
            response = requests.get(
                f"{run.stack.prometheus.url}/api/v1/label/{variable.label}/values", params=params, timeout=10
            )
            run.label_values.setdefault(flavour, {})[variable.name] = response.json()["data"]


def _backlog(run: Run, source: str, unreachable: str) -> None:
    """Clones to a site that refuses connections: a transient error, retried once, then dead-lettered."""
    stack = run.stack
    _send(run, [{"actor": "ping", "args": [f"hold-{i}"], "kwargs": {"hold_seconds": HOLD_SECONDS}} for i in range(2)])
    _wait_for(stack, f'sum(dramatiq_messages_in_progress{{job="{PLAIN_JOB}"}})', lambda v: v == [2], 20, "2 busy")
    _send(
        run,
        [{"actor": "ping", "args": [f"behind-{i}"]} for i in range(PINGS_BEHIND)]
        + [
            {"actor": "clone_wordpress", "args": [source, unreachable, {}], "options": _retry_once()}
            for _ in range(CLONES_BEHIND)
        ],
    )

    def backlog_alerts() -> bool:
        return all(run.firing(a, **labels) for a, (phase, labels) in FIRES_IN.items() if phase == "backlog")

    _wait_for_alerts(run, backlog_alerts, HOLD_SECONDS - 2, "backlog alerts firing")
    # The rules read the kubernetes-labelled job; the stack's own job scrapes on a tick of its own, so its
    # last sample can still be from before the backlog was queued: wait for one taken with it queued.
    _wait_for(
        stack,
        f'sum(dramatiq_queue_depth{{job="{PLAIN_JOB}",queue="ping",state="ready"}})',
        lambda v: v and v[0] > 0,
        3 * SCRAPE_TIMEOUT_SECONDS,
        "the stack's own job scraped the backlog",
    )
    run.record("backlog")


def _wait_for_alerts(run: Run, condition: Any, timeout: float, message: str) -> None:
    try:
        wait_until(condition, timeout, interval=0.5, message=message)
    except TimeoutError as error:
        firing = [(r["metric"]["alertname"], r["metric"].get("queue")) for r in run.stack.prometheus.query("ALERTS")]
        raise TimeoutError(f"{error}; ALERTS: {firing}") from None


def _retry_once() -> dict[str, int]:
    """Message options: one retry 0.2 s later, then the dead-letter queue."""
    return {"max_retries": 1, "min_backoff": 200, "max_backoff": 400}


def _failures(run: Run, unreachable: str, wordpress: Any) -> None:
    stack = run.stack
    source = wordpress.source.url
    client = stack.redis.client()
    clones = CLONES_BEHIND + LATE_CLONES
    invalid = sum(INVALID_PINGS)
    # Failures in waves a few scrapes apart: error counters are created by their first error, so a rate needs
    # a second wave to see them grow.
    _send(run, [{"actor": "ping", "args": ["not a valid nonce!"]} for _ in range(INVALID_PINGS[0])])
    wait_until(lambda: client.zcard("dramatiq:clone-queue.XQ") == CLONES_BEHIND, 60, message="first clones dead")
    time.sleep(2.5)
    _send(
        run,
        [{"actor": "ping", "args": ["still not valid!"]} for _ in range(INVALID_PINGS[1])]
        + [
            {"actor": "clone_wordpress", "args": [source, unreachable, {}], "options": _retry_once()}
            for _ in range(LATE_CLONES)
        ],
    )
    # A real clone (categories and tags only, to stay quick), twice: the second one skips what the first copied.
    target = wordpress.target.url
    options = {"content_types": ["categories", "tags"]}
    _send(run, [{"actor": "clone_wordpress", "args": [source, target, options]}])
    wait_until(lambda: client.zcard("dramatiq:clone-queue.XQ") == clones, 60, message="late clones dead")
    wait_until(lambda: client.zcard("dramatiq:ping.XQ") == invalid, 30, message="invalid pings dead")
    success = f'sum(dramatiq_messages_processed_total{{job="{PLAIN_JOB}", queue="clone-queue", outcome="success"}})'
    _wait_for(stack, success, lambda v: v == [1], 60, "first real clone done")
    time.sleep(2.5)
    _send(run, [{"actor": "clone_wordpress", "args": [source, target, options]}])
    _wait_for(stack, success, lambda v: v == [2], 60, "second real clone done")
    dead = f'sum(max by (queue) (dramatiq_queue_depth{{job="{PLAIN_JOB}", state="dead"}}))'
    _wait_for(stack, dead, lambda v: v == [clones + invalid], 30, "dead letters scraped")
    time.sleep(3)

    def failure_alerts() -> bool:
        return all(run.firing(a, **labels) for a, (phase, labels) in FIRES_IN.items() if phase == "failures")

    _wait_for_alerts(run, failure_alerts, 20, "failure alerts firing")
    run.record("failures")
    # What Grafana asks Prometheus for the panels with exemplars, while every trace reached the collector.
    for query in prometheus_queries(committed_dashboards()):
        if query.exemplar:
            for flavour, values in FLAVOURS.items():
                expr = substitute(query.expr, {**values, "__rate_interval": RATE_INTERVAL})
                series = stack.prometheus.exemplars(expr)
                trace_ids = {e["labels"]["trace_id"] for s in series for e in s["exemplars"]}
                run.exemplars[f"{flavour}: {query.key}"] = trace_ids


def _collector_down(run: Run) -> None:
    """Jobs go on without the collector; their spans are dropped and counted."""
    stack = run.stack
    stack.collector.process.stop()
    untraced = {**stack.producer_env(), "OTEL_SDK_DISABLED": "true"}  # the producer would wait for it too
    produce(untraced, [{"actor": "ping", "args": [f"untraced-{i}"]} for i in range(3)])
    dropped = f'sum(worker_telemetry_spans_dropped_total{{job="{PLAIN_JOB}"}})'
    _wait_for(stack, dropped, lambda v: v and v[0] > 0, 30, "dropped spans counted")
    time.sleep(2)
    run.record("collector stopped")


def _outages(run: Run, rules_file: Path) -> None:
    stack = run.stack
    # Without Redis a scrape takes seconds: give the kubernetes-labelled job the time a real one has.
    reloaded = _prometheus_config(stack, rules_file, kubernetes_target=True, kubernetes_interval="6s")
    stack.redis.stop()
    _record_after_reload(run, "redis stopped", ["DramatiqBrokerUnreachable"], reloaded, old_interval=1.0)
    # The worker dies; its target stays discovered, and every scrape fails. (A target gone from discovery
    # altogether is the other case of the absent alert: see rules/metrics-absent.test.yaml.)
    stack.worker.stop(timeout=30)
    reloaded = _prometheus_config(stack, rules_file, kubernetes_target=True)
    _record_after_reload(
        run, "worker stopped", ["DramatiqWorkerMetricsDown", "DramatiqWorkerMetricsAbsent"], reloaded, old_interval=6.0
    )


# ----------------------------------------------------------------------------- dashboards


def _keys(run: Run) -> list[tuple[str, str]]:
    return [(flavour, key) for flavour, queries in run.queries.items() for key in queries]


def test_every_dashboard_query_returns_data_after_a_healthy_run(run: Run) -> None:
    phase = run.phases["healthy"]
    missing, unexpected = [], []
    for flavour, key in _keys(run):
        data = _has_data(phase.results[f"{flavour}: {key}"])
        if key in EMPTY_WHEN_HEALTHY:
            if data:
                unexpected.append(
                    f"{flavour}: {key} is listed as empty but returned {phase.results[f'{flavour}: {key}']}"
                )
        elif not data:
            missing.append(f"{flavour}: {key}\n    {run.queries[flavour][key]}")
    assert not missing, "no data after the healthy run:\n" + "\n".join(missing)
    assert not unexpected, "\n".join(unexpected)
    known = {key for _, key in _keys(run)}
    assert set(EMPTY_WHEN_HEALTHY) <= known, "EMPTY_WHEN_HEALTHY names a query the dashboards do not have"
    assert len(known) == len(prometheus_queries(committed_dashboards())), "one key per query"


def test_every_dashboard_query_returns_data_after_failures(run: Run) -> None:
    phase = run.phases["failures"]
    problems = []
    for flavour, key in _keys(run):
        result = phase.results[f"{flavour}: {key}"]
        if not _has_data(result):
            problems.append(f"{flavour}: {key}: no data\n    {run.queries[flavour][key]}")
        elif key in POSITIVE_AFTER_FAILURES and not _positive(result):
            problems.append(f"{flavour}: {key}: not above 0: {_values(result)}")
    assert not problems, "\n".join(problems)


def test_backlog_panels_show_the_backlog(run: Run) -> None:
    phase = run.phases["backlog"]
    problems = []
    for flavour, key in _keys(run):
        if key in POSITIVE_DURING_BACKLOG and not _positive(phase.results[f"{flavour}: {key}"]):
            problems.append(f"{flavour}: {key}: {phase.results[f'{flavour}: {key}']}")
    assert not problems, "\n".join(problems)
    by_state = phase.results[f"kubernetes labels: {METRICS} / Queue depth by state / A"]
    depth = {(r["metric"]["queue"], r["metric"]["state"]): float(r["value"][1]) for r in by_state}
    assert depth[("ping", "ready")] > 0, depth
    assert depth[("clone-queue", "ready")] > 0, depth
    assert len(by_state) == 8, "one series per queue and state, whatever the number of scrape targets"
    in_progress = phase.results[f"no namespace label: {METRICS} / In progress / A"]
    assert _values(in_progress) == [2.0], "both worker threads busy"


def test_queue_depth_is_not_double_counted_across_targets(run: Run) -> None:
    """Both scrape jobs report the same global depth, like the pods of a release: with both selected (All of
    $job), each depth panel shows one target's depth per queue (`max by`), never the sum over targets.

    The expected values are computed from the raw samples of each target, read at the same instant as the panels.
    """
    for name in ("backlog", "failures"):
        phase = run.phases[name]
        raw: dict[str, dict[tuple[str, str], float]] = {}  # job -> (queue, state) -> depth
        for r in phase.results[RAW_DEPTH]:
            labels = r["metric"]
            raw.setdefault(labels["job"], {})[(labels["queue"], labels["state"])] = float(r["value"][1])
        assert raw.keys() == {PLAIN_JOB, K8S_JOB}, (name, "both targets scraped", raw.keys())
        series = set(raw[PLAIN_JOB]) | set(raw[K8S_JOB])
        once = {s: max(raw[job].get(s, 0.0) for job in raw) for s in series}  # what max by (queue, state) shows
        doubled = {s: sum(raw[job].get(s, 0.0) for job in raw) for s in series}  # what a sum would show

        by_state = {
            (r["metric"]["queue"], r["metric"]["state"]): float(r["value"][1])
            for r in phase.results[f"{BOTH_TARGETS}: {METRICS} / Queue depth by state / A"]
        }
        assert by_state == once, (name, by_state, once)
        for panel, state in (("Ready messages", "ready"), ("Dead letters", "dead")):
            shown = _values(phase.results[f"{BOTH_TARGETS}: {METRICS} / {panel} / A"])
            expected = sum(v for (_, s), v in once.items() if s == state)
            assert shown == [expected], (name, panel, shown, expected)
        # The check has teeth: some series is reported by both targets above zero, so a sum would differ.
        assert any(doubled[s] > once[s] > 0 for s in series), (name, raw)
    assert _positive(run.phases["backlog"].results[f"{BOTH_TARGETS}: {METRICS} / Ready messages / A"])
    assert _positive(run.phases["failures"].results[f"{BOTH_TARGETS}: {METRICS} / Dead letters / A"])


def test_variable_queries_return_values(run: Run) -> None:
    """label_values() of the metrics dashboard's variables, as Grafana asks Prometheus for them."""
    assert {v.name for v in run.variables} == {"namespace", "job", "queue", "actor"}
    for flavour, by_name in run.label_values.items():
        assert by_name["namespace"] == ["wp-ns"], "only the kubernetes-labelled target has a namespace"
        assert sorted(by_name["queue"]) == ["clone-queue", "ping"], flavour
        assert sorted(by_name["actor"]) == ["clone_wordpress", "ping"], (
            "every actor is there from worker boot (series at 0), though only pings ran so far"
        )
    # All namespaces (`.*`) include the target without one; a namespace selects only its own.
    assert sorted(run.label_values["no namespace label"]["job"]) == sorted([PLAIN_JOB, K8S_JOB])
    assert run.label_values["kubernetes labels"]["job"] == [K8S_JOB]


def test_processing_time_exemplars_link_to_the_traces_of_the_jobs(run: Run) -> None:
    """The exemplars Prometheus returns for the panels that show them are traces the collector received."""
    consumer_traces = {s.trace_id for s in run.stack.collector.spans() if s.kind == "consumer"}
    with_exemplars = [q for q in prometheus_queries(committed_dashboards()) if q.exemplar]
    assert len(with_exemplars) == 2
    assert len(run.exemplars) == len(with_exemplars) * len(FLAVOURS)
    for key, trace_ids in run.exemplars.items():
        assert trace_ids, f"{key}: no exemplars"
        assert trace_ids <= consumer_traces, f"{key}: exemplars of unknown traces"
        assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)


def test_spans_dropped_panel_counts_what_the_collector_missed(run: Run) -> None:
    key = f"{METRICS} / Spans dropped / A"
    for flavour in FLAVOURS:
        before = run.phases["failures"].results[f"{flavour}: {key}"]
        assert _has_data(before), "the counters exist from the start, at 0"
        assert not _positive(before), "nothing dropped while the collector ran"
        assert _positive(run.phases["collector stopped"].results[f"{flavour}: {key}"]), flavour


# ----------------------------------------------------------------------------- alerts


def test_no_alert_fires_on_a_healthy_run(run: Run) -> None:
    phase = run.phases["healthy"]
    assert phase.firing == []
    not_empty = {name: phase.results[f"alert: {name}"] for name in run.alerts if phase.results[f"alert: {name}"]}
    assert not not_empty, not_empty


@pytest.mark.parametrize("alert", sorted(FIRES_IN))
def test_each_alert_fires_on_its_event(run: Run, alert: str) -> None:
    phase_name, labels = FIRES_IN[alert]
    phase = run.phases[phase_name]
    result = phase.results[f"alert: {alert}"]
    assert result, f"{alert}: its expression returned nothing in phase {phase_name}:\n{run.alerts[alert]}"
    firing = [m for m in phase.firing if m["alertname"] == alert]
    assert any(all(m.get(k) == v for k, v in labels.items()) for m in firing), (alert, firing)
    assert alert not in {m["alertname"] for m in run.phases["healthy"].firing}


def test_alerts_resolve_when_their_cause_is_gone(run: Run) -> None:
    firing = {name: {m["alertname"] for m in phase.firing} for name, phase in run.phases.items()}
    assert "DramatiqQueueStalled" not in firing["failures"], "the clones ran: clone-queue is not stalled any more"
    assert "DramatiqQueueBacklogGrowing" not in firing["failures"], "the backlog was worked off"
    # A dead worker that is still discovered: down and, being the only one, absent too.
    assert {"DramatiqWorkerMetricsDown", "DramatiqWorkerMetricsAbsent"} <= firing["worker stopped"]


# ----------------------------------------------------------------------------- traces and logs


def test_traceql_attributes_exist_on_the_worker_spans(run: Run) -> None:
    """Tempo is not part of the stack: check that every attribute the TraceQL panels filter on is on the spans
    the collector received, with the values the queries look for."""
    spans = [s for s in run.stack.collector.spans() if s.kind == "consumer"]
    assert spans
    board = committed_dashboards()["wp-k8s-service-worker-traces.json"]
    queries = [t["query"] for p in board["panels"] if p.get("type") != "row" for t in p["targets"]]
    attributes = set()
    for query in queries:
        attributes |= set(re.findall(r"\bspan\.([\w.]+)", query))
    assert attributes >= {"messaging.operation.type", "messaging.destination.name", "dramatiq.message.outcome"}
    for attribute in attributes:
        assert any(attribute in s.attributes for s in spans), f"span.{attribute}: on no consumer span"
    assert {s.attributes["messaging.operation.type"] for s in spans} == {"process"}
    assert {s.attributes["messaging.destination.name"] for s in spans} == {"clone-queue", "ping"}
    outcomes = {s.attributes["dramatiq.message.outcome"] for s in spans}
    assert {"success", "retried", "failed"} <= outcomes
    assert any(s.status_code == 2 for s in spans), "status = error: dead-lettered jobs"
    assert {s.service_name for s in spans} == {"wp-k8s-service-worker"}, "the $service default"
    service_default = next(v for v in board["templating"]["list"] if v["name"] == "service")
    assert service_default["current"]["value"] == "wp-k8s-service-worker"


def test_logql_fields_exist_in_the_worker_logs(run: Run) -> None:
    """Loki is not part of the stack: the JSON fields the LogQL panels filter and show are in the worker's
    own log lines (what a log agent would ship), and a dead letter's line carries its trace."""
    lines = []
    for raw in run.stack.logs()["worker"].read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    assert len(lines) > 20
    board = committed_dashboards()["wp-k8s-service-worker-logs.json"]
    exprs = " ".join(p["targets"][0]["expr"] for p in board["panels"] if p.get("type") != "row")
    filtered = set(re.findall(r"\| (\w+)[=!]~?\"", exprs)) - {"__error__"}
    assert filtered == {"level", "actor", "trace_id"}
    for name in filtered:
        assert any(name in line for line in lines), name
    assert {line["level"] for line in lines} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    dead = [line for line in lines if line.get("message", "").startswith("Job dead-lettered")]
    assert dead
    assert all({"actor", "trace_id", "message_id", "error_type"} <= set(line) for line in dead)
    consumer_traces = {s.trace_id for s in run.stack.collector.spans() if s.kind == "consumer"}
    assert {line["trace_id"] for line in dead} <= consumer_traces, "the trace_id link leads to a real trace"
