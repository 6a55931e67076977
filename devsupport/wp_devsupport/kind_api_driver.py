"""Drives the kind job's test API (ci/kind/api/kind_api.py) in a process of its own, as ci/kind/kind-e2e.sh
does through the port-forward: runs the app's lifespan, sends the requests given as JSON on stdin
([{"method": "GET"|"POST", "path": "/pings"}, ...]) and prints the answers as JSON.

Run as `python -m wp_devsupport.kind_api_driver` with ci/kind/api as the working directory: `-m` puts
the working directory first on the import path, so `kind_api` is imported from there, the way the
image's `uvicorn kind_api:app` (WORKDIR /opt/api) imports it.

A process of its own because the app configures the global OpenTelemetry SDK (from OTEL_*) and
builds the broker from REDIS_* at import; WORKER_BROKER=stub makes it enqueue in memory, and then
the messages it enqueued are printed too.
"""

from __future__ import annotations

import json
import sys

from fastapi.testclient import TestClient


def main() -> int:
    import kind_api  # type: ignore[import-not-found]  # from the working directory, ci/kind/api

    requests = json.load(sys.stdin)
    answers = []
    with TestClient(kind_api.app) as client:  # startup and shutdown of the lifespan (span flush)
        for request in requests:
            response = client.request(request["method"], request["path"], params=request.get("params"))
            answers.append({"status": response.status_code, "body": response.json()})
    routes = sorted(getattr(route, "path", "") for route in kind_api.app.routes)
    messages = []
    from worker_app.tasks import broker

    queues = broker.queues if isinstance(broker.queues, dict) else {}  # the stub broker's, in memory
    for name, queue in queues.items():
        if hasattr(queue, "empty"):
            from dramatiq import Message

            while not queue.empty():
                message = Message.decode(queue.get_nowait())
                messages.append({"queue": name, "id": message.message_id, "args": list(message.args)})
    json.dump({"answers": answers, "routes": routes, "messages": messages}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
