"""The worker's pure parts, without a database: the lease book (crash isolation) and the
registry of running handlers that cancel requests reach."""

from __future__ import annotations

import asyncio

import pytest

from commandbus._engine.cancel_watcher import Running
from commandbus._engine.lease_book import LeaseBook
from commandbus.testing import make_context


def test_the_lease_book_waits_for_bystanders_but_not_for_suspects() -> None:
    book = LeaseBook()
    book.hold([1, 2], until=10.0)
    book.hold([3], until=4.0)
    assert len(book) == 3 and not book.isolating
    book.expired_waiting = True
    assert book.isolating
    # At t=5 lease 3 has expired (a suspect); 1 and 2 end at t=10: wait 5 s for them.
    assert book.until_bystanders_done(5.0) == 5.0
    book.extend(1, until=20.0)
    book.release(2)
    assert book.until_bystanders_done(5.0) == 15.0
    book.release(1)
    assert book.until_bystanders_done(5.0) is None  # only the suspect is left: rescue now
    book.extend(99, until=50.0)  # a lease not held is not added by an extension
    assert len(book) == 1
    book.reset()
    assert len(book) == 0 and not book.isolating


async def test_a_cancel_request_reaches_the_running_handler_once() -> None:
    running = Running()
    ctx = make_context()
    deadline = asyncio.timeout(None)
    with pytest.raises(TimeoutError):  # the deadline moved to now: cancelled at its await
        async with deadline:
            running.add(7, ctx, deadline)
            assert running and running.lease_ids() == [7]
            running.cancel(7, {"operator": "alice", "reason": "wrong customer"})
            running.cancel(7, {"operator": "bob", "reason": "second"})  # the first one stands
            running.cancel(8, {"operator": "carol", "reason": "not running"})  # ignored
            assert ctx.cancel_request == {"operator": "alice", "reason": "wrong customer"}
            assert ctx.cancel_requested
            await asyncio.sleep(10)
    assert deadline.expired()
    running.remove(7)
    assert not running and running.lease_ids() == []
