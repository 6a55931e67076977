"""chart-testing's `ct lint`, as users' chart pipelines run it: the chart's metadata against ct's own
Chart.yaml schema, yamllint with ct's rules, and `helm lint` once per CI values file in `chart/ci/`
(ct finds them by its `*-values.yaml` convention). Run with Helm 3 and Helm 4 (ct calls `helm` from PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wp_devsupport.chart import BIN, CHART, CI_VALUES, CI_VALUES_SUFFIX, HELMS, helm_path

#: yamllint and yamale, which ct runs, are in the venv (requirements/dev.in).
VENV_BIN = Path(sys.executable).parent


def _ct_lint(chart: Path, helm: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    ct = BIN / "ct"
    if not ct.exists():
        pytest.skip("bin/ct is missing: run `ci/tools.sh ct` (or `make tools`)")
    path_dir = tmp_path / "path"
    path_dir.mkdir(exist_ok=True)
    (path_dir / "helm").symlink_to(helm_path(helm))
    env = {**os.environ, "PATH": os.pathsep.join([str(path_dir), str(VENV_BIN), os.environ.get("PATH", "")])}
    return subprocess.run(
        [
            str(ct),
            "lint",
            "--charts",
            str(chart),
            "--chart-yaml-schema",
            str(BIN / "ct-etc" / "chart_schema.yaml"),
            "--lint-conf",
            str(BIN / "ct-etc" / "lintconf.yaml"),
            "--validate-maintainers=false",
            "--check-version-increment=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("helm", HELMS)
def test_ct_lint_passes_with_every_ci_values_file(helm: str, tmp_path: Path) -> None:
    result = _ct_lint(CHART, helm, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    linted = {line.split('"')[1] for line in result.stdout.splitlines() if "Linting chart with values file" in line}
    assert {Path(path).name for path in linted} == {path.name for path in CI_VALUES.glob(f"*{CI_VALUES_SUFFIX}")}
    assert "All charts linted successfully" in result.stdout


def test_ct_lint_fails_on_a_bad_ci_values_file(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    (chart / "ci" / "typo-values.yaml").write_text("worker:\n  replicaCont: 2\n")
    result = _ct_lint(chart, "helm", tmp_path)
    assert result.returncode != 0
    assert "typo-values.yaml" in result.stdout + result.stderr
    assert "replicaCont" in result.stdout + result.stderr
