"""commandbus.console: the bounded reads of the operator console, on a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import BatchCommand, CommandBus, SendRequest, ValidationError, console
from core.helpers import execute


async def _send(bus: CommandBus, n: int, domain: str = "orders", **kw: object) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    await bus.send_batch(
        [SendRequest(domain, "Charge", i, {"n": k}, **kw) for k, i in enumerate(ids)]
    )
    return ids


async def test_overview_counts_are_capped_and_series_per_minute(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    pending = await _send(bus, 5)
    done = await _send(bus, 3, domain="billing")
    parked = await _send(bus, 2, domain="billing")
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET status = 'COMPLETED', vt = NULL, updated_at = now() "
        "WHERE command_id = ANY(%s)",
        [done],
    )
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET status = 'IN_TROUBLESHOOTING_QUEUE', vt = NULL "
        "WHERE command_id = ANY(%s)",
        [parked],
    )
    ov = await console.overview(pool, schema=schema, cap=3)
    stats = {s.domain: s for s in ov.domains}
    assert set(stats) == {"orders", "billing"}
    assert stats["orders"].pending == 4  # capped: cap + 1 means "more than 3"
    assert stats["orders"].oldest_ready_age is not None
    assert stats["billing"].pending == 0
    assert stats["billing"].troubleshooting == 2
    assert stats["billing"].oldest_ready_age is None
    series = {(p.domain, p.completed, p.failed) for p in ov.throughput}
    assert ("billing", 3, 2) in series
    assert len(pending) == 5


async def test_find_commands_pages_by_keyset(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    ids = set(await _send(bus, 7))
    correlation = uuid.uuid4()
    linked = await _send(bus, 2, domain="billing", correlation_id=correlation)
    seen: set[uuid.UUID] = set()
    after = None
    pages = 0
    while True:
        page = await console.find_commands(
            pool, schema=schema, domain="orders", limit=3, after=after
        )
        pages += 1
        seen |= {c.command_id for c in page.items}
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert seen == ids and pages == 3

    by_correlation = await console.find_commands(pool, schema=schema, correlation_id=correlation)
    assert {c.command_id for c in by_correlation.items} == set(linked)
    one = await console.find_commands(pool, schema=schema, command_id=linked[0])
    assert [c.command_id for c in one.items] == [linked[0]]
    later = await console.find_commands(
        pool, schema=schema, created_after=datetime.now(UTC) + timedelta(hours=1)
    )
    assert later.items == [] and later.next_cursor is None
    with pytest.raises(ValidationError):
        await console.find_commands(pool, schema=schema, after="not-a-cursor")
    with pytest.raises(ValidationError):
        await console.find_commands(pool, schema=schema, limit=0)


async def test_command_detail_has_the_traceback(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    (command_id,) = await _send(bus, 1)
    await execute(
        pool,
        schema,
        "UPDATE {schema}.commands SET last_error_traceback = 'Traceback: boom' "
        "WHERE command_id = %s",
        [command_id],
    )
    detail = await console.command_detail(pool, "orders", command_id, schema=schema)
    assert detail is not None
    assert detail.traceback == "Traceback: boom"
    assert detail.command.command_id == command_id
    assert await console.command_detail(pool, "orders", uuid.uuid4(), schema=schema) is None


async def test_batches_and_domains_across_domains(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    made = []
    for domain in ("orders", "billing", "orders"):
        result = await bus.create_batch(
            domain, [BatchCommand("Charge", uuid.uuid4(), {})], name=f"b-{domain}"
        )
        made.append(result.batch_id)
    page = await console.list_batches(pool, schema=schema, limit=2)
    assert len(page.items) == 2 and page.next_cursor is not None
    rest = await console.list_batches(pool, schema=schema, limit=2, after=page.next_cursor)
    assert {b.batch_id for b in page.items + rest.items} == set(made)
    only = await console.list_batches(pool, schema=schema, domain="billing")
    assert [b.name for b in only.items] == ["b-billing"]
    assert await console.list_domains(pool, schema=schema) == ["billing", "orders"]
    processes = await console.list_processes(pool, schema=schema)
    assert processes.items == [] and processes.next_cursor is None


async def test_a_search_no_index_serves_is_cut_short(
    pool: AsyncConnectionPool, schema: str
) -> None:
    await execute(
        pool,
        schema,
        "INSERT INTO {schema}.commands (domain, command_id, command_type, status, "
        "max_attempts, data) SELECT 'orders', gen_random_uuid(), 'Charge', 'COMPLETED', 3, "
        "jsonb_build_object('n', g) FROM generate_series(1, 100000) g",
    )
    with pytest.raises(console.SearchTooBroadError, match="narrow the search"):
        await console.find_commands(pool, schema=schema, command_type="Nope", timeout_ms=1)
    # The connection went back to the pool without the budget.
    async with pool.connection() as conn:
        cur = await conn.execute("SHOW statement_timeout")
        assert (await cur.fetchone()) == ("0",)
