"""How the worker runs: settings, the broker and its middleware, the supervisor, health, the HTTP server.

`process` is the composition root of each process (settings read once from the environment, logging,
the process-wide broker); `broker.build_broker` composes the middleware and is the one place their
order is decided.
"""
