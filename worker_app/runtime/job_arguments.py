"""Arguments that cannot fit an actor's signature are a permanent failure, for every actor.

Dramatiq calls `actor.fn(*args, **kwargs)` with whatever the message carries. A message with too
many, too few or unknown arguments raises `TypeError` there, which `Retries` retries with backoff:
up to 8 times over hours for a clone that can never run. `ArgumentCheck` wraps each actor as it is
declared so that the call is bound to the signature first (and each value checked against a simple
annotation: `str`, `int`, `float`, `bool`, `dict`, `list`, `None` and unions of them); a mismatch
raises `InvalidJobArguments` with a reason that names arguments, never their values. It also adds
`InvalidJobArguments` to the actor's `throws`, so `Retries` dead-letters the message at once, the
metrics count it as failed and dead-lettered, and `FailureLog` logs the reason.

Example::

    broker = RedisBroker(middleware=[ArgumentCheck(), ...])

    @dramatiq.actor(broker=broker)
    def resize(path: str, width: int) -> None: ...

    resize.send("a.png", "wide")   # dead-lettered: "resize: width: expected int, got str"
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dramatiq import Middleware

from ..errors import InvalidJobArguments

if TYPE_CHECKING:
    from dramatiq import Actor, Broker

logger = logging.getLogger(__name__)

#: Annotations checked at the call; anything else (a class of the actor's own, `Any`) is not.
_CHECKED_TYPES: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    dict: (dict,),
    list: (list, tuple),
    type(None): (type(None),),
}


class ArgumentCheck(Middleware):
    """Binds each delivery's arguments to its actor's signature before the actor runs.

    No parameters. Add it to the broker before any actor is declared; actors declared on the broker
    afterwards are wrapped as they are declared.
    """

    def after_declare_actor(self, broker: Broker, actor: Actor[Any, Any]) -> None:
        if getattr(actor.fn, "__wrapped_by_argument_check__", False):
            return
        actor.fn = checked_call(actor.actor_name, actor.fn)
        throws = actor.options.get("throws") or ()
        if not isinstance(throws, tuple):
            throws = (throws,)
        if not any(issubclass(InvalidJobArguments, declared) for declared in throws):
            actor.options["throws"] = (*throws, InvalidJobArguments)


def checked_call(name: str, fn: Callable[..., Any], *, bind_in_order: bool = True) -> Callable[..., Any]:
    """`fn`, raising `InvalidJobArguments` when a call's arguments do not fit its signature.

    :param bind_in_order: bind positional-only calls without `Signature.bind` where that gives the same
      arguments (False: always `Signature.bind`, the reference `tests/worker/test_fast_paths.py` compares with).
    """
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: check the binding only
        hints = {}
    expected = {
        parameter: accepted
        for parameter in signature.parameters
        if (accepted := _accepted_types(hints.get(parameter, inspect.Parameter.empty))) is not None
    }

    # With only positional-or-keyword parameters (the usual actor), a call with positional arguments
    # alone, between the required and the total count, binds them in order: what `signature.bind`
    # would return, without its general matching on every call (that is most of this check's cost).
    parameters = list(signature.parameters.values())
    in_order = (
        tuple(parameter.name for parameter in parameters)
        if bind_in_order and all(parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for parameter in parameters)
        else None
    )
    required = sum(parameter.default is inspect.Parameter.empty for parameter in parameters)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        arguments: Iterable[tuple[str, Any]]
        if in_order is not None and not kwargs and required <= len(args) <= len(in_order):
            arguments = zip(in_order, args, strict=False)
        else:
            try:
                arguments = signature.bind(*args, **kwargs).arguments.items()
            except TypeError as error:
                raise InvalidJobArguments(f"{name}: {error}") from None
        for parameter, value in arguments:
            accepted = expected.get(parameter)
            if accepted is not None and not _fits(value, accepted):
                raise InvalidJobArguments(
                    f"{name}: {parameter}: expected {' or '.join(sorted({t.__name__ for t in accepted}))}, "
                    f"got {type(value).__name__}"
                )
        return fn(*args, **kwargs)

    call.__wrapped_by_argument_check__ = True  # type: ignore[attr-defined]
    return call


def _accepted_types(annotation: Any) -> tuple[type, ...] | None:
    """The classes a JSON value may have for `annotation`, or None when it is not checked."""
    if annotation is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        accepted: tuple[type, ...] = ()
        for member in typing.get_args(annotation):
            member_types = _accepted_types(member)
            if member_types is None:
                return None
            accepted += member_types
        return accepted
    if origin is not None:  # dict[str, Any], list[int]: the container only
        annotation = origin
    return _CHECKED_TYPES.get(annotation)


def _fits(value: object, accepted: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in accepted:
        return False  # JSON true is not a number
    return isinstance(value, accepted)
