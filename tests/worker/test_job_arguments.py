"""Arguments that do not fit an actor are dead-lettered at once, counted and logged with the reason."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from worker_app.errors import InvalidJobArguments
from worker_app.runtime.job_arguments import checked_call

JOB = {"queue": "jobs", "actor": "resize"}


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        ((), {}, "resize: missing a required argument: 'path'"),
        (("a.png", 10, 20, 30), {}, "resize: too many positional arguments"),
        (("a.png",), {"colour": "red"}, "resize: got an unexpected keyword argument 'colour'"),
        (("a.png", "wide"), {}, "resize: width: expected int, got str"),
        (("a.png", True), {}, "resize: width: expected int, got bool"),
        ((7,), {}, "resize: path: expected str, got int"),
        (("a.png", 1, "x"), {}, "resize: options: expected NoneType or dict, got str"),
    ],
)
def test_each_kind_of_bad_argument_is_refused_with_a_reason_naming_no_value(stack, caplog, args, kwargs, reason):
    ran: list[Any] = []

    @stack.actor(queue_name="jobs", max_retries=5)  # no `throws`: the check adds it
    def resize(path: str, width: int = 100, options: dict[str, Any] | None = None) -> None:
        ran.append(path)

    resize.send_with_options(args=args, kwargs=kwargs)
    with caplog.at_level(logging.WARNING, logger="worker_app.jobs"):
        stack.run("jobs")

    assert ran == []
    assert stack.value("dramatiq_messages_processed_total", **JOB, outcome="failed") == 1
    assert stack.value("dramatiq_messages_dead_lettered_total", **JOB) == 1
    assert stack.value("dramatiq_message_retries_total", **JOB) == 0
    assert stack.value("dramatiq_errors_total", **JOB, error_type="InvalidJobArguments") == 1
    (record,) = [r for r in caplog.records if r.name == "worker_app.jobs"]
    assert record.getMessage() == f"Job dead-lettered: {reason}"
    assert len(stack.broker.dead_letters) == 1


def test_good_arguments_still_run_and_the_actor_keeps_its_own_throws(stack):
    ran: list[Any] = []

    class Mine(Exception):
        pass

    @stack.actor(queue_name="jobs", throws=(Mine,))
    def resize(path: str, width: float = 1.5, **extra: Any) -> None:
        ran.append((path, width, extra))

    resize.send("a.png", 3, anything="goes")  # an int is a float; **extra takes any name
    stack.run("jobs")
    assert ran == [("a.png", 3, {"anything": "goes"})]
    assert stack.broker.get_actor("resize").options["throws"] == (Mine, InvalidJobArguments)


class Site:
    pass


def test_unchecked_annotations_are_left_to_the_actor():
    def job(site: Site, anything: Any, count: int) -> tuple[Any, Any, int]:
        return site, anything, count

    call = checked_call("job", job)
    assert call("x", [1], 2) == ("x", [1], 2)
    with pytest.raises(InvalidJobArguments, match="job: count: expected int, got float"):
        call("x", None, 2.5)
