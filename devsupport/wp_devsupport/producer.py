"""Enqueue jobs the way the API does, in a process of its own (its own broker and SDK).

Reads a JSON list of jobs on stdin: {"actor": "ping", "args": [...], "kwargs": {...},
"options": {"delay": 1000, ...}}; prints the message ids as a JSON list.
Run: python -m wp_devsupport.producer (with REDIS_* and OTEL_* in the environment).
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    jobs = json.load(sys.stdin)
    from worker_app import tasks
    from worker_app.producer import DramatiqTracing

    DramatiqTracing.setup(service_name="wp-k8s-service")
    ids = []
    for job in jobs:
        actor = getattr(tasks, job["actor"])
        message = actor.send_with_options(
            args=tuple(job.get("args", ())), kwargs=job.get("kwargs", {}), **job.get("options", {})
        )
        ids.append(message.message_id)
    DramatiqTracing.shutdown(timeout=10)
    json.dump(ids, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
