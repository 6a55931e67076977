"""Tests of the CI files for users: the GitHub Actions workflow, the kind e2e script and its inputs.

kind cannot create a cluster on the development machine (no registry for its node image), so
ci/kind/kind-e2e.sh never runs here for real. What can be checked here is, in these tests:

* test_ci_workflow.py: actionlint (with shellcheck on the `run:` blocks), pinned actions,
  permissions, timeouts, concurrency, the jobs calling the scripts.
* test_ci_kind_script.py: `bash -n` and shellcheck of the scripts, and ci/kind/kind-e2e.sh run from start
  to end against fake kind/kubectl/helm/docker/curl that record what they are asked to do.
* test_ci_kind_files.py: ci/kind/kind-values.yaml rendered through the root chart with the real helm 3 and
  4 and every object schema-validated; the collector manifest (and its config, by the real
  collector); ci/kind/kind-config.yaml; the CRDs the script applies; agreement between all of them.
* test_ci_kind_api.py: the test API (README block copied byte for byte, routes, locked
  requirements), a rehearsal of the kind assertions against a real Redis, worker and collector,
  and the test API image built and run hardened when a Docker engine answers.

The chart helpers come from wp_devsupport.chart (shared with tests/chart, not copied), the paths of
the CI files from wp_devsupport.ci_files.
"""

from __future__ import annotations

import pytest

from wp_devsupport.chart import cleanup


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    cleanup()
