"""The ``django.tasks`` backend contract, run against Django's ImmediateBackend (where
its semantics apply) and against commandbus's backend: same tasks, same assertions.

ImmediateBackend runs a task inside ``enqueue``; ours runs it in a worker, here
``run_tasks()`` (the workers' own code, in this process) before the result is refreshed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from commandbus_django._compat import (
    InvalidTask,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from commandbus_django.testing import run_tasks
from dj.shop import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_tasks")]


@pytest.fixture(params=["immediate", "default"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(backend: str, task: Any, *args: Any, **kwargs: Any) -> Any:
    """Enqueue on ``backend`` and let it run: at once (immediate) or by a worker."""
    result = task.using(backend=backend).enqueue(*args, **kwargs)
    if backend == "default":
        run_tasks()
        result.refresh()
    return result


def test_a_task_returns_its_value(backend: str) -> None:
    result = run(backend, tasks.add, 2, 3)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.is_finished
    assert result.return_value == 5
    assert result.args == [2, 3]
    assert result.kwargs == {}
    assert result.backend == backend
    assert result.attempts == 1 and len(result.worker_ids) == 1
    assert result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at


def test_arguments_and_return_values_are_json(backend: str) -> None:
    result = run(backend, tasks.shout, "hi", times=2)
    assert result.kwargs == {"times": 2}
    assert result.return_value == {"text": "HIHI"}


def test_an_async_task_function_runs(backend: str) -> None:
    assert run(backend, tasks.async_add, 20, 22).return_value == 42


def test_a_failure_keeps_its_exception_and_traceback(backend: str) -> None:
    result = run(backend, tasks.explode, "boom")
    assert result.status == TaskResultStatus.FAILED
    assert result.is_finished
    assert len(result.errors) == result.attempts >= 1
    error = result.errors[-1]
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "boom" in error.traceback and "ValueError" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


async def test_async_enqueue_and_refresh(backend: str) -> None:
    from asgiref.sync import sync_to_async
    from django.db import connections

    try:
        result = await tasks.add.using(backend=backend).aenqueue(5, 6)
        if backend == "default":
            await sync_to_async(run_tasks, thread_sensitive=False)()
            await result.arefresh()
        assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 11
    finally:  # Django's connection of the thread aenqueue ran in (as ASGI requests do)
        await sync_to_async(connections.close_all)()


def test_a_task_that_takes_context_gets_its_attempt(backend: str) -> None:
    result = run(backend, tasks.attempt_number)
    assert result.return_value == {"attempt": 1, "id": result.id}


def test_priority_is_accepted(backend: str) -> None:
    assert run(backend, tasks.urgent).return_value == "urgent"
    assert run(backend, tasks.add.using(priority=-100), 1, 1).return_value == 2


def test_signals_tell_enqueued_started_finished(backend: str) -> None:
    seen: list[tuple[str, str, str]] = []

    def recorder(name: str) -> Any:
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((name, task_result.id, str(task_result.status)))

        return receive

    receivers = {
        task_enqueued: recorder("enqueued"),
        task_started: recorder("started"),
        task_finished: recorder("finished"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    try:
        result = run(backend, tasks.add, 1, 2)
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver)
    assert [(name, status) for name, rid, status in seen if rid == result.id] == [
        ("enqueued", "READY"),
        ("started", "RUNNING"),
        ("finished", "SUCCESSFUL"),
    ]


def test_a_queue_the_backend_does_not_serve_is_refused(backend: str) -> None:
    with pytest.raises(InvalidTask, match="nope"):
        tasks.add.using(backend=backend, queue_name="nope")


def test_arguments_that_are_not_json_are_refused_before_anything_is_written(
    backend: str,
) -> None:
    with pytest.raises(TypeError):
        tasks.remember.using(backend=backend).enqueue(object())
    assert run_tasks() == []


@pytest.fixture(autouse=True)
def _no_leftover_calls() -> Iterator[None]:
    tasks.CALLS.clear()
    yield
    tasks.CALLS.clear()
