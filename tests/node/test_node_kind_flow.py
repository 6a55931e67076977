"""The kind end-to-end flow, run on the local node: `ci/kind/kind-e2e.sh` with CLUSTER_PROVIDER=local.

The same script and the same assertions (ci/kind/e2e_check.py) as users' kind job: only the cluster
(the node of host processes, wp_devsupport.cluster.node) and how images reach it (ci/node/images.sh:
built here, imported into the node's containerd) differ. The root chart with ci/kind/kind-values.yaml +
ci/node/node-values.yaml in a namespace enforcing Pod Security `restricted`: every pod Ready, `helm test`
passes, pings and clones through the API counted exactly once in the worker's /metrics, and every job
traced request -> send -> process at the in-cluster collector.

The node is the session's (tests/node/conftest.py): the one running from `.state/node` or
WP_NODE_WORKDIR, left running, or one started for the session. The script's step timings go to the terminal summary.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wp_devsupport.cluster.node import Node
from wp_devsupport.repo import BIN, REPO

KIND_E2E = REPO / "ci" / "kind" / "kind-e2e.sh"
#: Images built and imported, helm install with --wait, helm test, the jobs: a few minutes on 2 cores.
TIMEOUT_SECONDS = 900
TIMINGS: list[str] = []


def test_the_kind_flow_passes_on_the_local_node(node: Node, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    env = {
        **os.environ,
        "CLUSTER_PROVIDER": "local",
        "NODE_WORKDIR": str(node.workdir),
        "PYTHON": sys.executable,
        "ARTIFACTS_DIR": str(artifacts),
        "PATH": f"{BIN}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    try:
        result = subprocess.run(
            ["bash", str(KIND_E2E)],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or "")
        pytest.fail(f"ci/kind/kind-e2e.sh did not finish within {TIMEOUT_SECONDS}s:\n{stderr[-8000:]}")
    TIMINGS.extend(re.findall(r"^\[kind-e2e\]\s+(\d+s\s+.+)$", result.stderr, flags=re.MULTILINE))
    assert result.returncode == 0, f"ci/kind/kind-e2e.sh failed (exit {result.returncode}):\n{result.stderr[-12000:]}"
    assert "[kind-e2e] PASSED" in result.stderr
    # The script reused the module's node and left it running; it must still be whole.
    assert "reusing the running local node" in result.stderr
    assert set(node.running()) == set(node.recorded_components())
    # What the assertions printed: every job counted once and traced end to end.
    assert "{queue='ping', actor='ping', outcome='success'}: +3, expected +3: ok" in result.stderr
    assert result.stderr.count(": ok, trace ") == 6
