"""The README documents every environment variable the package reads."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READ_IN_CODE = re.compile(r'env_[a-z_]+\(\s*env,\s*"([A-Z][A-Z0-9_]+)"')
DOCUMENTED = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \|", re.M)
#: The per-signal form of a documented variable (`OTEL_EXPORTER_OTLP_PROTOCOL`), standard in the SDK.
COVERED_ELSEWHERE = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}


def test_every_variable_the_worker_reads_is_in_a_readme_table():
    read = {name for path in (REPO / "worker_app").rglob("*.py") for name in READ_IN_CODE.findall(path.read_text())}
    documented = set(DOCUMENTED.findall((REPO / "README.md").read_text()))
    assert len(read) > 30, "the pattern no longer finds the settings"
    missing = read - documented - COVERED_ELSEWHERE
    assert not missing, f"variables the README does not document: {sorted(missing)}"
