"""Tasks enqueued in a transaction that has not committed yet, per Django connection: so
that :func:`commandbus_django.testing.run_tasks` can say why it would run nothing."""

from __future__ import annotations

from django.db import connections

__all__ = ["TasksNotCommitted", "note_enqueued", "refuse_uncommitted"]


class TasksNotCommitted(RuntimeError):
    """Tasks were enqueued in a transaction that is still open (``TestCase`` never
    commits its own): no other connection can see them, so none could run."""


def note_enqueued(alias: str, result_id: str) -> None:
    """Called by the backend for each task enqueued inside ``atomic()`` on ``alias``."""
    wrapper = connections[alias]
    pending: list[str] = wrapper.__dict__.setdefault("_commandbus_uncommitted", [])
    pending.append(result_id)
    wrapper.on_commit(pending.clear)


def refuse_uncommitted(alias: str) -> None:
    wrapper = connections[alias]
    pending: list[str] = wrapper.__dict__.get("_commandbus_uncommitted", [])
    if pending and not wrapper.in_atomic_block:
        pending.clear()  # that transaction ended (rolled back: its tasks are gone)
    if pending:
        raise TasksNotCommitted(
            f"{len(pending)} task(s) were enqueued in a transaction that has not committed "
            f"(e.g. {pending[0]}): workers, and run_tasks(), see committed tasks only. "
            "Django's TestCase never commits: use TransactionTestCase (pytest-django: "
            "@pytest.mark.django_db(transaction=True)), or call run_tasks() after the "
            "atomic() block"
        )
