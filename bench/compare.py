"""`python -m bench.compare BEFORE.json AFTER.json`: two benchmark runs side by side, in Markdown.

For the record of a change: the ratios to bare (each run's own bare, so runs on different machines
compare), RSS over bare, enqueue, and where the profile's samples went, before and after. Prints
the section; `docs/benchmarks.md` carries it under the run it compares.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _workers(results: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(row["config"], row["mode"], row["processes"]): row for row in results["summary"]["workers"]}


def _median(row: dict[str, Any] | None, key: str) -> float | None:
    stats = row.get(key) if row else None
    return float(stats["median"]) if stats else None


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _label(results: dict[str, Any]) -> str:
    environment = results.get("environment", {})
    return f"{results.get('started', '?')[:10]} ({environment.get('cpu_model', '?')})"


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The Markdown section comparing `before` with `after` (two `benchmarks.json` documents)."""
    out = [f"Before: the run of {_label(before)}; after: the run of {_label(after)}.", ""]
    out += ["| configuration | mode, processes | CPU x bare before | after | RSS - bare before (MB) | after |"]
    out += ["|---|---|---|---|---|---|"]
    old, new = _workers(before), _workers(after)
    for key in sorted(new, key=lambda key: (key[1], key[2], key[0])):
        config, mode, processes = key
        if config == "bare":
            continue
        out.append(
            f"| {config} | {mode}, {processes} | {_cell(_median(old.get(key), 'cpu_ratio'), '.3f')} "
            f"| {_cell(_median(new[key], 'cpu_ratio'), '.3f')} "
            f"| {_cell(_median(old.get(key), 'rss_delta_mb'), '+.1f')} "
            f"| {_cell(_median(new[key], 'rss_delta_mb'), '+.1f')} |"
        )
    old_sends = {row["config"]: row for row in before["summary"]["enqueue"]}
    out += ["", "| producer | send() wall x bare before | after |", "|---|---|---|"]
    for row in after["summary"]["enqueue"]:
        if row["config"] != "bare":
            previous = _median(old_sends.get(row["config"]), "wall_ratio")
            out.append(f"| {row['config']} | {_cell(previous, '.3f')} | {_cell(_median(row, 'wall_ratio'), '.3f')} |")
    old_profile, new_profile = before.get("profile") or {}, after.get("profile") or {}
    if old_profile.get("categories") and new_profile.get("categories"):
        shares = {item["category"]: item["share"] for item in old_profile["categories"]}
        out += ["", "| where our worker's GIL samples went (py-spy) | before | after |", "|---|---|---|"]
        for item in new_profile["categories"]:
            previous = shares.get(item["category"])
            before_share = "-" if previous is None else f"{previous * 100:.1f}%"
            out.append(f"| {item['category']} | {before_share} | {item['share'] * 100:.1f}% |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="benchmarks.json of the earlier run")
    parser.add_argument("after", type=Path, help="benchmarks.json of the later run")
    options = parser.parse_args()
    runs = []
    for path in (options.before, options.after):
        try:
            runs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            parser.error(f"{path}: {error}")
    print(compare(runs[0], runs[1]), end="")


if __name__ == "__main__":
    main()
