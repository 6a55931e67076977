from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # the API's own request spans

from worker_app.producer import DramatiqTracing
from worker_app.tasks import clone_wordpress  # builds the broker from REDIS_* on import


@asynccontextmanager
async def lifespan(app: FastAPI):
    DramatiqTracing.setup(service_name="wp-k8s-service")  # SDK from OTEL_*, tracing on the broker
    yield
    DramatiqTracing.shutdown()  # flush spans, bounded by WORKER_TELEMETRY_FLUSH_TIMEOUT


app = FastAPI(lifespan=lifespan)
FastAPIInstrumentor.instrument_app(app)


@app.post("/clones")
def start_clone(source_url: str, target_url: str) -> dict[str, str]:
    message = clone_wordpress.send(source_url, target_url, {"conflict": "skip"})
    return {"job_id": message.message_id}


@app.post("/clones/scheduled")
def schedule_clone(source_url: str, target_url: str, delay_seconds: int) -> dict[str, str]:
    message = clone_wordpress.send_with_options(args=(source_url, target_url, {}), delay=delay_seconds * 1000)
    return {"job_id": message.message_id}
