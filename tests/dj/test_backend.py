"""What commandbus's backend adds to the contract: the task commits or rolls back with
the caller's transaction, retries, timeouts, dedupe, run_after, per-task options."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from commandbus_django._compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus
from commandbus_django._options import our_priority
from commandbus_django.testing import TasksNotCommitted, run_tasks
from dj.shop import tasks
from dj.shop.models import Order


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_tasks")
class TestTheCallersTransaction:
    def test_a_task_enqueued_in_a_rolled_back_block_never_existed(self) -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            result = tasks.add.enqueue(1, 2)
            raise RuntimeError("the view failed after enqueueing")
        with pytest.raises(TaskResultDoesNotExist):
            tasks.add.get_result(result.id)
        assert run_tasks() == []

    def test_a_task_becomes_visible_when_the_block_commits(self) -> None:
        with transaction.atomic():
            result = tasks.add.enqueue(1, 2)
            with pytest.raises(TaskResultDoesNotExist):  # other connections: not yet
                tasks.add.get_result(result.id)
        assert tasks.add.get_result(result.id).status == TaskResultStatus.READY
        (ran,) = run_tasks()
        assert ran.id == result.id and ran.return_value == 3

    def test_a_view_enqueues_with_its_rows(self) -> None:
        client = Client()
        declined = client.post("/orders/?fail=1")
        assert declined.status_code == 402
        assert Order.objects.count() == 0 and run_tasks() == []

        placed = client.post("/orders/")
        assert placed.status_code == 201
        (ran,) = run_tasks()
        assert ran.id == placed.json()["task"] and ran.return_value == "shipped"
        assert Order.objects.get(pk=placed.json()["order"]).state == "shipped"

    def test_outside_atomic_the_task_commits_at_once(self) -> None:
        result = tasks.add.enqueue(4, 5)
        assert tasks.add.get_result(result.id).status == TaskResultStatus.READY


@pytest.mark.django_db
def test_under_testcase_run_tasks_says_why_it_cannot_run_them() -> None:
    """A test in a transaction that never commits (TestCase, plain django_db)."""
    tasks.add.enqueue(1, 1)
    with pytest.raises(TasksNotCommitted, match=r"TransactionTestCase"):
        run_tasks()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_tasks")
class TestRetriesAndOptions:
    def test_a_failing_task_is_retried_until_it_succeeds(self) -> None:
        result = tasks.flaky.enqueue()
        (ran,) = run_tasks()
        assert ran.status == TaskResultStatus.SUCCESSFUL and ran.return_value == 3
        assert ran.attempts == 3 and len(ran.worker_ids) == 3
        assert [e.exception_class_path for e in ran.errors] == ["builtins.ConnectionError"] * 2
        assert "attempt 2 failed" in ran.errors[-1].traceback
        assert ran.id == result.id

    def test_a_business_rule_error_fails_at_once(self) -> None:
        tasks.refuse.enqueue()
        (ran,) = run_tasks()
        assert ran.status == TaskResultStatus.FAILED and ran.attempts == 1
        assert ran.errors[0].exception_class_path == "commandbus.BusinessRuleError"

    def test_the_backends_max_attempts_bounds_retries(self) -> None:
        tasks.explode.enqueue("again")
        (ran,) = run_tasks()
        assert ran.status == TaskResultStatus.FAILED and ran.attempts == 2  # OPTIONS

    def test_a_task_over_its_timeout_fails(self) -> None:
        tasks.slow.enqueue()
        (ran,) = run_tasks()
        assert ran.status == TaskResultStatus.FAILED
        assert ran.errors[-1].exception_class_path == "commandbus.HandlerTimeoutError"

    def test_run_after_defers_the_task(self) -> None:
        later = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
        assert run_tasks() == []
        assert tasks.add.get_result(later.id).status == TaskResultStatus.READY

    def test_a_dedupe_key_enqueues_once(self) -> None:
        first = tasks.remember.using(dedupe_key="order-7").enqueue("a")
        second = tasks.remember.using(dedupe_key="order-7").enqueue("b")
        assert second.id == first.id
        assert len(run_tasks()) == 1
        assert tasks.CALLS == ["a"]
        other = tasks.remember.using(dedupe_key="order-8").enqueue("c")
        assert other.id != first.id

    def test_priority_orders_the_queue(self) -> None:
        low = tasks.remember.using(priority=-100).enqueue("low")
        high = tasks.remember.using(priority=100).enqueue("high")
        run_tasks(concurrency=1)
        assert tasks.CALLS == ["high", "low"]
        assert {low.id, high.id}

    def test_tasks_run_in_their_own_queue(self) -> None:
        result = tasks.shout.enqueue("q")
        assert run_tasks(queues=["default"]) == []
        (ran,) = run_tasks(queues=["emails"])
        assert ran.id == result.id and ran.task.queue_name == "emails"


@pytest.mark.django_db(transaction=True)
def test_an_unknown_or_malformed_id_does_not_exist() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(str(uuid.uuid4()))
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("not-an-id")


def test_bad_task_options_are_refused_when_declared() -> None:
    with pytest.raises(InvalidTask, match=r"whole number"):
        tasks.add.using().__class__(func=tasks.add.func, max_attempts=0)
    with pytest.raises(InvalidTask, match="dedupe_key"):
        tasks.add.using(dedupe_key="")


def test_priorities_map_onto_ten_bands_higher_first() -> None:
    assert [our_priority(p) for p in (100, 81, 80, 21, 20, 1, 0, -19, -20, -80, -81, -100)] == [
        0, 0, 1, 3, 4, 4, 5, 5, 6, 9, 9, 9
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    tasks.CALLS.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_tasks")
def test_nothing_keeps_a_connection_to_the_test_database() -> None:
    """What blocks DROP DATABASE at the end of a test run: connections left open by a
    cached pool. Enqueue, run, read results: only Django's own connection remains."""
    import time

    from django.db import connection

    result = tasks.add.enqueue(1, 2)
    run_tasks()
    tasks.add.get_result(result.id)
    deadline = time.monotonic() + 10  # a closed connection's server process exits soon after
    while others(connection) != 0:
        assert time.monotonic() < deadline, "a connection to the test database stays open"
        time.sleep(0.05)


def others(connection: Any) -> int:
    """Sessions on the test database besides Django's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        (count,) = cursor.fetchone()
    return int(count)
