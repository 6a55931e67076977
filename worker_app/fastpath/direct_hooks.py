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
    #: Per signal (without its `before_`/`after_` prefix), the middleware implementing the hook and
    #: its bound method, in calling order (the after-hooks reversed already). Made by `_resolve`, and
    #: read only while `_hooks_len` is the number of middleware they were made for.
    _before: dict[str, _Hooks]
    _after: dict[str, _Hooks]
    _hooks_len = -1

    def add_middleware(self, middleware: Middleware, **where: Any) -> None:
        super().add_middleware(middleware, **where)  # type: ignore[misc]
        self._hooks_len = -1

    def _resolve(self, prefix: str, signal: str) -> _Hooks:
        """The hooks of `prefix + signal`, recorded in their table (both tables rebuilt when the middleware changed)."""
        if self._hooks_len != len(self.middleware):  # a middleware was added since
            self._before, self._after = {}, {}
            self._hooks_len = len(self.middleware)
        name = prefix + signal
        base = getattr(Middleware, name, None)
        hooks = tuple(
            (middleware, getattr(middleware, name))
            for middleware in self.middleware
            if getattr(type(middleware), name, None) is not base or name in getattr(middleware, "__dict__", ())
        )
        if prefix == "after_":
            hooks = self._after[signal] = hooks[::-1]
        else:
            self._before[signal] = hooks
        return hooks

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hooks = self._before.get(signal) if self._hooks_len == len(self.middleware) else None
        if hooks is None:  # first use of the signal, or a middleware was added since
            hooks = self._resolve("before_", signal)
        for middleware, hook in hooks:
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in before_%s of %r.", signal, middleware, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hooks = self._after.get(signal) if self._hooks_len == len(self.middleware) else None
        if hooks is None:
            hooks = self._resolve("after_", signal)
        for middleware, hook in hooks:
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in after_%s of %r.", signal, middleware, exc_info=True)
