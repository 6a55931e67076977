"""Broker signal dispatch that calls only the middleware implementing each hook.

Reference behaviour: `dramatiq.Broker.emit_before` and `dramatiq.Broker.emit_after`, which call
every middleware's hook for every signal, most of them the base class's no-op. Order, arguments and
error handling here are Dramatiq's own (a `MiddlewareError` from a before-hook propagates, anything
else is logged); `tests/worker/test_fast_paths.py` runs both side by side and compares the calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dramatiq import Middleware
from dramatiq.middleware import MiddlewareError

_Hooks = tuple[tuple[Middleware, Callable[..., None]], ...]


class DirectHooks:
    """Mix-in for a Dramatiq broker class: emits each signal only to the middleware that implement it.

    Put it before the broker class in the bases; the resulting broker behaves like the original one
    in every observable way. Adding middleware later is supported (the dispatch table is rebuilt).

    Example::

        class FastRedisBroker(DirectHooks, RedisBroker):
            pass

        broker = FastRedisBroker(client=client, middleware=middleware)
    """

    middleware: list[Middleware]
    logger: Any
    _hooks: dict[str, _Hooks]
    _hooks_len = -1

    def add_middleware(self, middleware: Middleware, **where: Any) -> None:
        super().add_middleware(middleware, **where)  # type: ignore[misc]
        self._hooks_len = -1

    def _hooks_of(self, signal: str) -> _Hooks:
        if self._hooks_len != len(self.middleware):  # a middleware was added since
            self._hooks = {}
            self._hooks_len = len(self.middleware)
        hooks = self._hooks.get(signal)
        if hooks is None:
            base = getattr(Middleware, signal, None)
            hooks = self._hooks[signal] = tuple(
                (middleware, getattr(middleware, signal))
                for middleware in self.middleware
                if getattr(type(middleware), signal, None) is not base or signal in getattr(middleware, "__dict__", ())
            )
        return hooks

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        signal = "before_" + signal
        for middleware, hook in self._hooks_of(signal):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", signal, middleware, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        signal = "after_" + signal
        for middleware, hook in reversed(self._hooks_of(signal)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", signal, middleware, exc_info=True)
