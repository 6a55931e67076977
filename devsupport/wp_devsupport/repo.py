"""Where the checkout is, for every helper that runs its tools, charts and files.

The package is installed editable from devsupport/ (`make venv`), so the repository is the directory
above it. A copy installed elsewhere has no checkout to work on: that is refused at import.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (devsupport/wp_devsupport/repo.py -> three levels up).
REPO = Path(__file__).resolve().parents[2]
#: The pinned Go tools `make tools` links here (helm, otelcol, prometheus, ...).
BIN = REPO / "bin"

if not (REPO / "worker_app").is_dir() or not (REPO / "chart" / "Chart.yaml").is_file():
    raise ImportError(
        f"wp_devsupport must be installed editable from a checkout (make venv); {REPO} is not the repository"
    )
