"""The test API of the kind job: the README's FastAPI example plus what the chart and the e2e need.

`app.py` next to this file is the ```python block under "### Enqueueing from the API (FastAPI)" in
README.md, byte for byte (tests/ci/test_kind_api.py fails when they drift apart). It is imported
unchanged; this module only adds two routes to the same `app`:

- `GET /healthz`: the path the chart's API startup, liveness and readiness probes use
  (`api.*Probe.path`, port `http` = `api.containerPort` 8000).
- `POST /pings`: enqueues the `ping` actor with a fresh nonce, so ci/kind/kind-e2e.sh can follow a job
  that always succeeds (a `clone_wordpress` job fails for good in kind: no WordPress host is allowed).

The image runs `uvicorn kind_api:app` (see the Dockerfile); FastAPIInstrumentor already wraps the
app, so requests to the routes added here get their SERVER spans too.
"""

from __future__ import annotations

import secrets

from app import app

from worker_app.tasks import ping

__all__ = ["app"]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/pings")
def send_ping() -> dict[str, str]:
    nonce = secrets.token_hex(8)
    message = ping.send(nonce)
    return {"job_id": message.message_id, "nonce": nonce}
