"""The setup guide's module name for the API's tracing: an alias of `worker_app.producer`, nothing more.

The service's setup guide tells the API team to write::

    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=REDIS_URL)
    dramatiq.set_broker(broker)

    from dramatiq_otlp_middleware import DramatiqTracing
    DramatiqTracing.setup(service_name="wp-k8s-service-worker")

This module makes that code run unchanged: `DramatiqTracing` here is `worker_app.producer.DramatiqTracing`
(the same class, one implementation), shipped in the same distribution (`wp-k8s-service-worker`).
New code may import either name.
"""

from worker_app.producer import DramatiqTracing

__all__ = ["DramatiqTracing"]
