"""The GitHub Actions workflow: actionlint clean, actions pinned, least privilege, bounded, thin."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from wp_devsupport.ci_files import BIN, KIND_E2E, REPO, TOOLS_SH, WORKFLOW, run, script_setting, shellcheck

_PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _actionlint() -> str:
    path = BIN / "actionlint"
    if not path.exists():
        built = run([str(TOOLS_SH), "actionlint"], timeout=600, cwd=REPO)
        if built.returncode != 0 or not path.exists():
            pytest.fail(
                "bin/actionlint is missing and `ci/tools.sh actionlint` could not build it "
                f"(needs Go and the Go module proxy):\n{built.stderr[-3000:]}"
            )
    return str(path)


def test_actionlint_is_clean_with_shellcheck_on_run_blocks() -> None:
    result = run([_actionlint(), "-shellcheck", shellcheck(), "-no-color", str(WORKFLOW)], cwd=REPO)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_every_action_is_pinned_by_commit_sha() -> None:
    lines = [line.strip() for line in WORKFLOW.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert lines, "the workflow uses no action?"
    for line in lines:
        reference, _, comment = line.split("uses:", 1)[1].partition("#")
        assert _PINNED.match(reference.strip()), f"not pinned by a full commit SHA: {line}"
        assert re.match(r"\s*v\d+(\.\d+)*\b", comment), f"no version comment next to the SHA: {line}"


def test_same_action_same_sha(workflow: dict[Any, Any]) -> None:
    seen: dict[str, set[str]] = {}
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                action, _, sha = step["uses"].partition("@")
                seen.setdefault(action, set()).add(sha)
    assert {action: shas for action, shas in seen.items() if len(shas) > 1} == {}


def test_least_privilege_and_bounded_runs(workflow: dict[Any, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert "${{ github.workflow }}" in workflow["concurrency"]["group"]
    for name, job in workflow["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 60, f"job {name} needs a timeout of at most an hour"
        assert "permissions" not in job or job["permissions"] == {"contents": "read"}, name
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{name}: checkout keeps the token"


def test_jobs_call_the_scripts_anyone_can_run(workflow: dict[Any, Any]) -> None:
    def commands(job: str) -> str:
        return "\n".join(step.get("run", "") for step in workflow["jobs"][job]["steps"])

    assert set(workflow["jobs"]) >= {"lint", "worker", "chart", "image", "kind"}
    assert "make lint" in commands("lint")
    assert "make test-worker" in commands("worker")
    assert "tests/chart" in commands("chart")
    assert "tests/ci" in commands("chart")
    assert "make image" in commands("image")
    assert "ci/kind/kind-e2e.sh" in commands("kind")
    # Thin steps: no step is a script of its own.
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            assert len(step.get("run", "").strip().splitlines()) <= 5, f"{name}: move this step into a script under ci/"


def test_kind_job_installs_the_kind_release_the_config_pins(workflow: dict[Any, Any]) -> None:
    assert workflow["env"]["KIND_VERSION"] == script_setting("KIND_VERSION", KIND_E2E)
    run_lines = "\n".join(step.get("run", "") for step in workflow["jobs"]["kind"]["steps"])
    assert 'go install "sigs.k8s.io/kind@$KIND_VERSION"' in run_lines
    assert "ci/tools.sh helm crds" in run_lines
    assert set(workflow["jobs"]["kind"]["needs"]) >= {"chart", "image"}


def test_actionlint_and_its_shellcheck_do_find_problems(tmp_path: Path) -> None:
    """The lint above is not vacuous: a bad expression and an unquoted variable are both reported."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "on: push\n"
        "permissions:\n  contents: read\n"
        "jobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.no_such_context }}\n"
        "      - run: cp $SOURCE /tmp\n"
    )
    result = run([_actionlint(), "-shellcheck", shellcheck(), "-no-color", str(broken)])
    assert result.returncode == 1
    assert "no_such_context" in result.stdout
    assert "SC2086" in result.stdout
