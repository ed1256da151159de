"""commandbus.console: the bounded reads of the operator console, on a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    BatchCommand,
    CommandBus,
    SendRequest,
    TroubleshootingFilter,
    ValidationError,
    console,
    pause_domain,
)
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


async def _park_many(pool: AsyncConnectionPool, schema: str, n: int, domain: str) -> None:
    await execute(
        pool,
        schema,
        "INSERT INTO {schema}.commands (domain, command_id, command_type, status, attempts, "
        "max_attempts, data, last_error_type, last_error_code, last_error_message, updated_at) "
        "SELECT %s, gen_random_uuid(), 'Charge', 'IN_TROUBLESHOOTING_QUEUE', 1, 3, '{{}}', "
        "'PermanentCommandError', CASE WHEN g %% 3 = 0 THEN 'TIMEOUT' ELSE 'DECLINED' END, "
        "'declined ' || g, now() - g * interval '1 second' FROM generate_series(1, %s) g",
        [domain, n],
    )


async def test_error_groups_read_a_bounded_number_of_parked_commands(
    pool: AsyncConnectionPool, schema: str
) -> None:
    await _park_many(pool, schema, 30, "orders")
    await _park_many(pool, schema, 4, "billing")
    bounded = await console.error_groups(pool, schema=schema, scan=10)
    assert bounded.counted == 10 and not bounded.complete
    assert sum(g.count for g in bounded.groups) == 10
    everything = await console.error_groups(pool, schema=schema, scan=100)
    assert everything.complete and everything.counted == 34
    by_key = {(g.domain, g.error_code): g.count for g in everything.groups}
    assert by_key == {
        ("orders", "DECLINED"): 20,
        ("orders", "TIMEOUT"): 10,
        ("billing", "DECLINED"): 3,
        ("billing", "TIMEOUT"): 1,
    }
    one = TroubleshootingFilter(domain="billing")
    assert (await console.error_groups(pool, one, schema=schema, scan=4)).complete is False
    assert (await console.error_groups(pool, one, schema=schema, scan=5)).counted == 4
    assert await console.count_parked(pool, schema=schema, cap=10) == 11  # "more than 10"
    assert await console.count_parked(pool, schema=schema, cap=100) == 34
    assert await console.count_parked(pool, one, schema=schema) == 4
    page = await console.parked_page(pool, one, schema=schema, limit=3)
    assert len(page.items) == 3 and page.next is not None
    rest = await console.parked_page(pool, one, schema=schema, limit=3, after=page.next)
    assert len(rest.items) == 1 and rest.next is None


async def test_parked_reads_with_a_rare_filter_are_cut_short(
    pool: AsyncConnectionPool, schema: str
) -> None:
    await _park_many(pool, schema, 100_000, "orders")
    rare = TroubleshootingFilter(error_code="NEVER")
    with pytest.raises(console.SearchTooBroadError, match="a domain, or a parked since"):
        await console.error_groups(pool, rare, schema=schema, timeout_ms=1)
    with pytest.raises(console.SearchTooBroadError, match="a domain, or a parked since"):
        await console.parked_page(pool, rare, schema=schema, timeout_ms=1)
    with pytest.raises(console.SearchTooBroadError, match="a domain, or a parked since"):
        await console.count_parked(pool, rare, schema=schema, timeout_ms=1)


async def test_the_overview_lists_paused_domains(pool: AsyncConnectionPool, schema: str) -> None:
    await pause_domain(pool, "quiet", operator="ops", reason="incident 7", schema=schema)
    ov = await console.overview(pool, schema=schema)
    assert [d.domain for d in ov.domains] == ["quiet"]  # nothing waits there, still listed
    assert ov.paused["quiet"].operator == "ops" and ov.paused["quiet"].reason == "incident 7"
