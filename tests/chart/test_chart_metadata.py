"""Chart metadata users' tooling reads: `kubeVersion` (the README's minimum, enforced by Helm) and the
environment chart's committed `Chart.lock`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from wp_devsupport.chart import CHART, HELMS, REPO, HelmError, default_values, render_chart, run_helm


def _readme_minimum() -> str:
    match = re.search(r"^\| Kubernetes \| (\d+\.\d+)\+", (CHART / "README.md").read_text(), flags=re.M)
    assert match, "chart/README.md states no minimum Kubernetes version"
    return match.group(1)


class TestKubeVersion:
    @pytest.mark.parametrize("chart_yaml", [CHART / "Chart.yaml", REPO / "Chart.yaml"], ids=["chart", "root"])
    def test_matches_the_readme_minimum(self, chart_yaml: Path) -> None:
        assert yaml.safe_load(chart_yaml.read_text())["kubeVersion"] == f">={_readme_minimum()}.0-0"

    @pytest.mark.parametrize("helm", HELMS)
    def test_helm_refuses_older_clusters(self, helm: str) -> None:
        major, minor = map(int, _readme_minimum().split("."))
        with pytest.raises(HelmError, match=r"chart requires kubeVersion: >=1\.29\.0-0 which is incompatible"):
            render_chart(default_values(), helm=helm, kube_version=f"{major}.{minor - 1}")
        assert render_chart(default_values(), helm=helm, kube_version=f"{major}.{minor}")

    @pytest.mark.parametrize("helm", HELMS)
    def test_renders_without_kube_version_as_official_builds_do(self, helm: str) -> None:
        """Released helm binaries assume a current cluster for `helm template`; so must ours (ci/tools.sh)."""
        assert "kind: Deployment" in run_helm(["template", "wp", str(CHART), "--set", "redis.host=redis"], helm=helm)


class TestChartLock:
    """Committed, like the Airflow and Bitnami charts' locks: `helm dependency build .` checks it against
    Chart.yaml and fails when a dependency changed without `helm dependency update .`."""

    def test_is_tracked_and_lists_the_dependencies(self) -> None:
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "Chart.lock"], cwd=REPO, capture_output=True, check=False
        )
        assert tracked.returncode == 0, "Chart.lock is not committed"
        lock = yaml.safe_load((REPO / "Chart.lock").read_text())
        wanted = yaml.safe_load((REPO / "Chart.yaml").read_text())["dependencies"]
        assert [{k: d[k] for k in ("name", "repository", "version")} for d in lock["dependencies"]] == wanted

    def test_is_in_sync_with_chart_yaml(self, tmp_path: Path) -> None:
        for name in ("Chart.yaml", "Chart.lock", ".helmignore", "values-staging.yaml"):
            shutil.copy2(REPO / name, tmp_path / name)
        shutil.copytree(REPO / "templates", tmp_path / "templates")
        shutil.copytree(CHART, tmp_path / "chart")
        run_helm(["dependency", "build", str(tmp_path)])
        assert (tmp_path / "Chart.lock").read_text() == (REPO / "Chart.lock").read_text(), "build rewrote the lock"
        # A dependency changed without `helm dependency update`: the lock no longer matches.
        chart_yaml = (
            (tmp_path / "Chart.yaml").read_text().replace("repository: file://chart", "repository: file://./chart")
        )
        (tmp_path / "Chart.yaml").write_text(chart_yaml)
        with pytest.raises(HelmError, match=r"out of sync"):
            run_helm(["dependency", "build", str(tmp_path)])
