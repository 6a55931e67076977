"""The chart's alert rules, as Prometheus gets them from the PrometheusRule, checked and unit-tested by the
real promtool (Prometheus 3.16, bin/promtool).

tests/observability/rules/*.test.yaml hold promtool unit tests (`rule_files: [rules.yaml]`): each runs in a
temporary directory next to the rules rendered with the chart's defaults (release `wp` in `wp-ns`, so the
series carry the labels the Prometheus Operator gives the ServiceMonitor's targets). Every alert must have a
test where it fires (labels and the templated summary and description compared exactly) and one where it
does not. The static `runbook` and `runbook_url` annotations are dropped for the unit tests (promtool
compares every annotation; test_chart_objects.py checks them) so that the tests read as the behaviour.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wp_devsupport.observability import REPO, RULE_TESTS_DIR, alerting_rules, render_rules, write_rule_file

PROMTOOL = REPO / "bin" / "promtool"
README = REPO / "chart" / "README.md"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail("bin/promtool is missing: run `ci/tools.sh prometheus` (or `make tools`)")
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def default_rule() -> dict[str, Any]:
    return render_rules()


def test_rendered_rules_pass_promtool_check_with_every_lint(default_rule: dict[str, Any], tmp_path: Path) -> None:
    path = write_rule_file(default_rule, tmp_path / "rules.yaml")
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules(default_rule))} rules found" in result.stdout


def test_rules_with_non_default_values_pass_promtool_check(tmp_path: Path) -> None:
    rule = render_rules(
        {
            "prometheusRule": {
                "selector": 'job="wp-worker", cluster=~"eu-.*"',
                "rules": {"errorRatio": {"threshold": 0.05}, "backlogOld": {"maxWaitSeconds": 60.5}},
                "additionalRules": [
                    {"record": "wp:processed:rate5m", "expr": "sum(rate(dramatiq_messages_processed_total[5m]))"}
                ],
            }
        }
    )
    path = write_rule_file(rule, tmp_path / "rules.yaml")
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _unit_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.test.yaml"))


def test_every_alert_has_a_firing_and_a_silent_unit_test(default_rule: dict[str, Any]) -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in _unit_test_files():
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == ["rules.yaml"], path.name
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
                for alert in case.get("exp_alerts") or []:
                    assert set(alert.get("exp_annotations", {})) == {"summary", "description"}, (path.name, case)
    alerts = set(alerting_rules(default_rule))
    assert alerts - fires == set(), "alerts without a test where they fire"
    assert alerts - silent == set(), "alerts without a test where they stay silent"
    assert fires | silent <= alerts, "tests of alerts the chart does not have"


@pytest.mark.parametrize("test_file", [p.name for p in _unit_test_files()])
def test_promtool_unit_tests(test_file: str, default_rule: dict[str, Any], tmp_path: Path) -> None:
    for group in default_rule["spec"]["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("runbook", None)
            rule.get("annotations", {}).pop("runbook_url", None)
    write_rule_file(default_rule, tmp_path / "rules.yaml")
    shutil.copy(RULE_TESTS_DIR / test_file, tmp_path / test_file)
    result = promtool("test", "rules", test_file, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_readme_has_a_runbook_for_every_alert(default_rule: dict[str, Any]) -> None:
    """Each runbook_url points at a heading of chart/README.md (GitHub's anchor: the name in lower case)."""
    headings = set(re.findall(r"^#{2,5} (Dramatiq\w+)$", README.read_text(), re.M))
    assert headings == set(alerting_rules(default_rule))
