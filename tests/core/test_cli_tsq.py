"""``commandbus tsq`` for fixing failures: filters, summary, show, reasons and bulk forms.

Run as subprocesses against the real database, as in test_cli.py: ``--json`` parses
back, actions land in the audit trail with operator and reason, a dry run lists and
writes nothing, and misuse ends with exit 2 and one line.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    CommandBus,
    CommandStatus,
    ReplyOutcome,
    ReplyQueue,
    TroubleshootingQueue,
)
from core._parking import TRACEBACK, park_many
from core.helpers import execute
from core.test_cli import USER, db, run_cli, run_many

pytestmark = pytest.mark.anyio

DOMAIN = "cli"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def operator_events(pool: AsyncConnectionPool, schema: str) -> dict[uuid.UUID, Any]:
    rows = await execute(
        pool,
        schema,
        "SELECT command_id, event_type, details FROM {schema}.audit"
        " WHERE event_type LIKE 'OPERATOR_%%'",
    )
    return {command_id: (event_type, details) for command_id, event_type, details in rows}


async def test_list_filters_by_type_error_and_parked_time(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    old = await park_many(bus, pool, schema, 2, domain=DOMAIN, parked_at=T0)
    new = await park_many(
        bus, pool, schema, 2, domain=DOMAIN, error_code="LATE", parked_at=T0 + timedelta(days=1)
    )
    ship = await park_many(bus, pool, schema, 1, domain=DOMAIN, command_type="Ship")
    timeout = await park_many(bus, pool, schema, 1, domain="other", error_type="TimeoutError")
    on = functools.partial(db, database_url, schema, "tsq", "list", "--json")

    results = await run_many(
        on("--type", "Ship"),
        on("--error-code", "LATE"),
        on("--error-type", "TimeoutError"),
        on("--since", "2025-12-31", "--until", "2026-01-01T12:00:00+00:00"),
        on("--since", "1h"),  # an age: parked within the last hour
        on("--domain", DOMAIN, "--limit", "3"),
        on("--domain", DOMAIN, "--limit", "2", "--offset", "3"),
    )

    found = [[uuid.UUID(i["command_id"]) for i in r.json()] for r in results]
    assert found[0] == ship
    assert set(found[1]) == set(new)
    assert found[2] == timeout
    assert set(found[3]) == set(old)
    assert set(found[4]) == set(ship + timeout)
    assert found[5][:1] == ship and set(found[5][1:]) <= set(new)  # newest parked first
    assert len(found[6]) == 2 and set(found[6]) <= set(new + old)
    assert set(found[5] + found[6]) == set(old + new + ship)
    item = results[0].json()[0]
    assert (item["last_error_code"], item["last_error_traceback"]) == ("BROKEN", TRACEBACK)


async def test_list_pages_with_after_in_human_output(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    ids = await park_many(bus, pool, schema, 3, domain=DOMAIN)
    first = await run_cli(*db(database_url, schema, "tsq", "list", "--limit", "2"))
    assert first.status == 0, first.stderr
    token = first.stdout.splitlines()[-1].removeprefix("(more: --after ").removesuffix(")")
    rest = (
        await run_cli(*db(database_url, schema, "tsq", "list", "--after", token, "--json"))
    ).json()
    shown = [line.split()[1] for line in first.stdout.splitlines()[2:4]]
    assert sorted(shown + [i["command_id"] for i in rest]) == sorted(str(i) for i in ids)


async def test_summary_groups_errors_by_code(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    await park_many(bus, pool, schema, 3, domain=DOMAIN, message="card declined")
    await park_many(bus, pool, schema, 1, domain=DOMAIN, error_code="NO_HANDLER")
    as_json, human, filtered = await run_many(
        db(database_url, schema, "tsq", "summary", "--json"),
        db(database_url, schema, "tsq", "summary"),
        db(database_url, schema, "tsq", "summary", "--error-code", "NO_HANDLER", "--json"),
    )
    groups = as_json.json()
    assert [(g["error_code"], g["count"], g["sample_message"]) for g in groups] == [
        ("BROKEN", 3, "card declined"),
        ("NO_HANDLER", 1, "boom"),
    ]
    assert human.status == 0 and "COUNT" in human.stdout and "card declined" in human.stdout
    assert [g["error_code"] for g in filtered.json()] == ["NO_HANDLER"]


async def test_show_and_commands_show_print_the_traceback_and_audit_trail(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    (command_id,) = await park_many(bus, pool, schema, 1, domain=DOMAIN)
    tsq_json, tsq_human, commands_json, commands_human = await run_many(
        db(database_url, schema, "tsq", "show", DOMAIN, str(command_id), "--json"),
        db(database_url, schema, "tsq", "show", DOMAIN, str(command_id)),
        db(database_url, schema, "commands", "show", DOMAIN, str(command_id), "--json"),
        db(database_url, schema, "commands", "show", DOMAIN, str(command_id)),
    )
    shown = tsq_json.json()
    assert shown == commands_json.json()
    command = shown["command"]
    assert (command["status"], command["data"]) == ("IN_TROUBLESHOOTING_QUEUE", {"n": 0})
    assert (command["last_error_code"], command["last_error_traceback"]) == ("BROKEN", TRACEBACK)
    assert [e["event_type"] for e in shown["audit_trail"]] == ["SENT"]
    for human in (tsq_human, commands_human):
        assert human.status == 0, human.stderr
        assert "traceback:\n  Traceback (most recent call last):" in human.stdout
        assert "  RuntimeError: boom" in human.stdout and "audit trail:" in human.stdout
    missing = await run_cli(*db(database_url, schema, "tsq", "show", DOMAIN, str(uuid.uuid4())))
    assert "no command" in missing.one_line_error(2)


async def test_show_prints_each_operator_action_whole_with_the_operator_first(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    (command_id,) = await park_many(bus, pool, schema, 1, domain=DOMAIN)
    reason = "the payment provider's sandbox refused every card until its fix of 3 March"
    await TroubleshootingQueue(pool, schema=schema).operator_retry(
        DOMAIN, command_id, operator="night-shift-operator", reason=reason
    )

    (shown,) = await run_many(db(database_url, schema, "tsq", "show", DOMAIN, str(command_id)))

    assert shown.status == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if "OPERATOR_RETRY" in line]
    details = line.split("OPERATOR_RETRY", 1)[1].strip()
    assert details.startswith(f"by night-shift-operator; reason: {reason}; msg_id="), details


async def test_single_actions_take_a_reason(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    retry, cancel, complete = await park_many(bus, pool, schema, 3, domain=DOMAIN)
    on = functools.partial(db, database_url, schema, "tsq")
    results = await run_many(
        on("retry", DOMAIN, str(retry), "--reason", "deployed 2.3.1"),
        on("cancel", DOMAIN, str(cancel), "--reason", "duplicate", "--operator", "alice"),
        on("complete", DOMAIN, str(complete), "--reason", "done by hand", "--json"),
    )
    assert [r.status for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert results[2].json()["reason"] == "done by hand"
    events = await operator_events(pool, schema)
    event_type, details = events[retry]
    assert (event_type, details["operator"], details["reason"]) == (
        "OPERATOR_RETRY",
        USER,
        "deployed 2.3.1",
    )
    assert events[cancel] == ("OPERATOR_CANCEL", {"operator": "alice", "reason": "duplicate"})
    assert events[complete] == ("OPERATOR_COMPLETE", {"operator": USER, "reason": "done by hand"})


async def test_bulk_retry_dry_run_lists_and_the_real_run_acts(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    down = await park_many(bus, pool, schema, 4, domain=DOMAIN, error_code="UPSTREAM_DOWN")
    other = await park_many(bus, pool, schema, 2, domain=DOMAIN)
    bulk = functools.partial(
        db, database_url, schema, "tsq", "retry", "--all", "--domain", DOMAIN,
        "--error-code", "UPSTREAM_DOWN",
    )  # fmt: skip

    dry_human, dry_json = await run_many(bulk("--dry-run"), bulk("--dry-run", "--json"))
    assert dry_human.status == 0, dry_human.stderr
    assert dry_human.stdout.startswith("dry run: would have retried 4 commands\n")
    assert all(str(command_id) in dry_human.stdout for command_id in down)
    preview = dry_json.json()
    assert (preview["action"], preview["dry_run"], preview["count"]) == ("OPERATOR_RETRY", True, 4)
    assert await operator_events(pool, schema) == {}

    done = await run_cli(*bulk("--reason", "provider is back", "--operator", "alice"))
    assert done.status == 0, done.stderr
    assert done.stdout.strip() == "retried 4 commands by alice"
    events = await operator_events(pool, schema)
    assert set(events) == set(down)
    assert {(e, d["operator"], d["reason"]) for e, d in events.values()} == {
        ("OPERATOR_RETRY", "alice", "provider is back")
    }
    for command_id in other:
        meta = await bus.get_command(DOMAIN, command_id)
        assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE


async def test_bulk_cancel_and_complete_with_limit_and_ids(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    ids = await park_many(bus, pool, schema, 5, domain=DOMAIN, reply_to="ops")
    on = functools.partial(db, database_url, schema, "tsq")
    canceled = await run_cli(
        *on(
            "cancel", "--all", "--id", str(ids[0]), "--id", str(ids[1]), "--reason", "dup", "--json"
        )
    )
    completed = await run_cli(
        *on("complete", "--all", "--domain", DOMAIN, "--limit", "2", "--result", '{"by": "hand"}')
    )
    assert canceled.json()["count"] == 2
    assert completed.stdout.strip() == f"completed 2 commands by {USER}"
    replies = await ReplyQueue(pool, "ops", schema=schema).read(10)
    assert sorted(r.outcome for r in replies) == sorted(
        [ReplyOutcome.CANCELED] * 2 + [ReplyOutcome.SUCCESS] * 2
    )
    assert all(r.result == {"by": "hand"} for r in replies if r.outcome == ReplyOutcome.SUCCESS)


async def test_misuse_exits_2_with_one_line_and_writes_nothing(
    database_url: str, schema: str, pool: AsyncConnectionPool, bus: CommandBus
) -> None:
    (command_id,) = await park_many(bus, pool, schema, 1, domain=DOMAIN)
    on = functools.partial(db, database_url, schema, "tsq")
    results = await run_many(
        on("retry", "--all"),  # no criterion
        on("retry"),  # neither DOMAIN ID nor --all
        on("retry", DOMAIN, str(command_id), "--error-code", "X"),
        on("retry", DOMAIN, "--all"),
        on("cancel", "--all", "--domain", DOMAIN),  # cancel needs --reason
        on("retry", "--all", "--domain", DOMAIN, "--operator", ""),
        on("list", "--since", "last tuesday"),
        on("list", "--after", "nonsense"),
        on("retry", "--all", "--domain", "bad domain"),
    )
    expected = [
        "at least one criterion",
        "needs DOMAIN ID, or --all",
        "--error-code only apply with --all",
        "give no DOMAIN ID",
        "--reason",
        "operator",
        "--since",
        "after",
        "domain",
    ]
    for result, text in zip(results, expected, strict=True):
        assert text in result.one_line_error(2)
    assert await operator_events(pool, schema) == {}
