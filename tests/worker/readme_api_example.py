"""Runs the README's FastAPI example for real (a process of its own: it owns the global SDK).

Prints JSON: the HTTP answers and the options of the messages the stub broker received.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

from dramatiq import Message
from fastapi.testclient import TestClient

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Enqueueing from the API (FastAPI)") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README lost its FastAPI example"
    return match.group(1)


def main() -> int:
    module = types.ModuleType("api")
    exec(compile(readme_example(), "README.md#fastapi", "exec"), module.__dict__)  # noqa: S102 - our own README
    answers = []
    with TestClient(module.app) as client:  # runs the lifespan: setup, then shutdown
        answers.append(
            client.post("/clones", params={"source_url": "https://a.example", "target_url": "https://b.example"}).json()
        )
        answers.append(
            client.post(
                "/clones/scheduled",
                params={"source_url": "https://a.example", "target_url": "https://c.example", "delay_seconds": 60},
            ).json()
        )
    from worker_app.tasks import broker

    messages = []
    for queue_name in ("clone-queue", "clone-queue.DQ"):
        queue = broker.queues[queue_name]
        while not queue.empty():
            message = Message.decode(queue.get_nowait())
            messages.append({"queue": queue_name, "id": message.message_id, "options": message.options})
    json.dump({"answers": answers, "messages": messages}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
