"""The names spans and metrics carry: semantic conventions from the package, our own keys here.

Standard names come from `opentelemetry-semantic-conventions` (the messaging attributes are still
in its incubating namespace in the locked version; `error.type` is stable). The keys below are
ours: dashboards, alert rules, tests and the README rely on them, so they are spelled only here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

__all__ = [
    "ACTOR_NAME",
    "ERROR_TYPE",
    "INSTRUMENTATION_NAME",
    "INSTRUMENTATION_VERSION",
    "LINK_TYPE",
    "LINK_TYPE_PREVIOUS_ATTEMPT",
    "MESSAGE_ARGUMENTS",
    "MESSAGE_DEAD_LETTERED",
    "MESSAGE_DELAY_MS",
    "MESSAGE_OUTCOME",
    "MESSAGE_RETRIES",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_SYSTEM",
    "MESSAGING_SYSTEM_DRAMATIQ",
    "SCHEMA_URL",
]

#: Instrumentation scope of our spans (kept from when tracing was one module: collectors and the
#: kind checks match on it).
INSTRUMENTATION_NAME = "worker_app.tracing"
try:
    #: Version of the instrumentation scope: the package's version.
    INSTRUMENTATION_VERSION = version("wp-k8s-service-worker")
except PackageNotFoundError:  # running from a source tree that was never installed
    INSTRUMENTATION_VERSION = "0.0.0"
#: Semantic-conventions schema the attribute names follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"

#: `messaging.system` of every span: not in the well-known list, so the library's own name.
MESSAGING_SYSTEM_DRAMATIQ = "dramatiq"

#: Span attribute: the Dramatiq actor the message is for.
ACTOR_NAME = "dramatiq.actor.name"
#: Span attribute: how many times the message was retried before this delivery (0 on the first).
MESSAGE_RETRIES = "dramatiq.message.retries"
#: Span attribute: how the delivery ended (`success`, `retried`, `failed`, `skipped`; see `outcomes`).
MESSAGE_OUTCOME = "dramatiq.message.outcome"
#: Span attribute: true when the delivery moved the message to the dead-letter queue.
MESSAGE_DEAD_LETTERED = "dramatiq.message.dead_lettered"
#: Span attribute of a `send`: the delay asked for, in milliseconds.
MESSAGE_DELAY_MS = "dramatiq.message.delay_ms"
#: Span attribute: the actor's arguments as JSON (only with `WORKER_TRACE_ARGUMENTS=true`).
MESSAGE_ARGUMENTS = "dramatiq.message.arguments"
#: Link attribute: why a consumer span links to another span.
LINK_TYPE = "dramatiq.link.type"
#: `dramatiq.link.type` of the link from a retried delivery to the attempt that failed before it.
LINK_TYPE_PREVIOUS_ATTEMPT = "previous_attempt"
