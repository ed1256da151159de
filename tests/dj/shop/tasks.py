"""Tasks of the test app, declared the Django way (``django.tasks`` or the backport)."""

from __future__ import annotations

from typing import Any

import django

if django.VERSION >= (6,):
    from django.tasks import task
else:
    from django_tasks import task

from commandbus import BusinessRuleError
from commandbus_django import periodic

from .models import Order

#: Calls seen by `remember`, in this process.
CALLS: list[Any] = []


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails")
def shout(text: str, *, times: int = 1) -> dict[str, Any]:
    return {"text": text.upper() * times}


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task
def explode(message: str) -> None:
    raise ValueError(message)


@task(max_attempts=1)
def refuse() -> None:
    raise BusinessRuleError("NO_STOCK", "nothing left")


@task(takes_context=True)
def attempt_number(context: Any) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True, max_attempts=3)
def flaky(context: Any) -> int:
    """Fails twice, then succeeds: its third attempt returns 3."""
    if context.attempt < 3:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return int(context.attempt)


@task
def ship(order_id: int) -> str:
    Order.objects.filter(pk=order_id).update(state="shipped")
    return "shipped"


@task(priority=50)
def urgent() -> str:
    return "urgent"


@task
def remember(value: Any) -> None:
    CALLS.append(value)


@task(timeout=0.5, max_attempts=1)
def slow() -> None:
    import time

    time.sleep(3)


@task(max_running=2)
def limited() -> None:
    return None


@task
def nightly() -> str:
    return "report"


periodic(nightly, every=3600, name="shop-nightly")
