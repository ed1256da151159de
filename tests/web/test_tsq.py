"""The troubleshooting queue page: filter, group, select, confirm with a dry run, act."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, CommandStatus
from web.conftest import OPERATOR
from web.helpers import csrf, park, send


async def _seed(
    bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> dict[str, list[uuid.UUID]]:
    declined = await send(bus, 4, command_type="Charge")
    timeouts = await send(bus, 3, command_type="Charge")
    other = await send(bus, 2, domain="billing", command_type="Invoice")
    await park(pool, schema, declined, error_code="DECLINED", message="card declined")
    await park(pool, schema, timeouts, error_type="TransientCommandError", error_code="TIMEOUT")
    await park(pool, schema, other, error_code="NO_ADDRESS", message="no address")
    return {"declined": declined, "timeouts": timeouts, "other": other}


def _confirm_form(page: httpx.Response, **fields: str | list[str]) -> dict[str, str | list[str]]:
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    return {**hidden, "csrf_token": csrf(page), **fields}


async def test_filters_and_groups_by_error(
    viewer: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    seeded = await _seed(bus, pool, schema)
    anon = viewer
    page = await anon.get("/tsq")
    assert page.status_code == 200
    for code in ("DECLINED", "TIMEOUT", "NO_ADDRESS"):
        assert code in page.text
    assert "9 matching" in page.text

    page = await anon.get("/tsq", params={"domain": "orders", "error_code": "TIMEOUT"})
    assert "3 matching" in page.text
    for command_id in seeded["timeouts"]:
        assert str(command_id) in page.text
    for command_id in seeded["declined"] + seeded["other"]:
        assert str(command_id) not in page.text

    page = await anon.get("/tsq", params={"type": "Invoice"})
    assert "2 matching" in page.text
    # Viewers see the queue but get no action buttons.
    assert 'value="retry"' not in page.text
    assert "Read-only" in page.text
    assert 'id="role">(viewer)' in page.text


async def test_select_all_matching_retries_with_reason_and_operator(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    seeded = await _seed(bus, pool, schema)
    page = await client.get("/tsq", params={"error_code": "DECLINED"})
    assert 'value="retry"' in page.text
    form = {"csrf_token": csrf(page), "error_code": "DECLINED", "all": "1", "action": "retry"}
    confirm = await client.post("/tsq/confirm", data=form)
    assert confirm.status_code == 200, confirm.text
    assert 'data-count="4"' in confirm.text
    # The dry run changed nothing.
    for command_id in seeded["declined"]:
        meta = await bus.get_command("orders", command_id)
        assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE

    # Parked after the confirmation: not swept along by "all matching".
    late = await send(bus, 1)
    await park(pool, schema, late, error_code="DECLINED")

    applied = await client.post(
        "/tsq/apply", data=_confirm_form(confirm, reason="gateway fixed <b>now</b>")
    )
    assert applied.status_code == 200, applied.text
    assert 'data-count="4"' in applied.text
    assert "gateway fixed &lt;b&gt;now&lt;/b&gt;" in applied.text
    for command_id in seeded["declined"]:
        meta = await bus.get_command("orders", command_id)
        assert meta is not None and meta.status == CommandStatus.PENDING
        trail = await bus.get_audit_trail(command_id)
        retry = [e for e in trail if e.event_type == "OPERATOR_RETRY"]
        assert len(retry) == 1
        assert retry[0].details["operator"] == OPERATOR
        assert retry[0].details["reason"] == "gateway fixed <b>now</b>"
    untouched = await bus.get_command("orders", late[0])
    assert untouched is not None and untouched.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    for command_id in seeded["timeouts"] + seeded["other"]:
        events = await bus.get_audit_trail(command_id)
        assert not [e for e in events if e.event_type.startswith("OPERATOR")]

    # The command page shows the operator and the reason in the timeline.
    page = await client.get(f"/commands/orders/{seeded['declined'][0]}")
    assert f'<span class="operator">{OPERATOR}</span>' in page.text


async def test_selected_ids_cancel_needs_reason_then_cancels(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    seeded = await _seed(bus, pool, schema)
    chosen = seeded["timeouts"][:2]
    page = await client.get("/tsq")
    form = {"csrf_token": csrf(page), "id": [str(i) for i in chosen], "action": "cancel"}
    confirm = await client.post("/tsq/confirm", data=form)
    assert 'data-count="2"' in confirm.text
    refused = await client.post("/tsq/apply", data=_confirm_form(confirm, reason=""))
    assert refused.status_code == 400
    hidden = _confirm_form(confirm, reason="duplicate order")
    hidden["id"] = [str(i) for i in chosen]
    done = await client.post("/tsq/apply", data=hidden)
    assert done.status_code == 200, done.text
    for command_id in chosen:
        meta = await bus.get_command("orders", command_id)
        assert meta is not None and meta.status == CommandStatus.CANCELED
        trail = await bus.get_audit_trail(command_id)
        event = next(e for e in trail if e.event_type == "OPERATOR_CANCEL")
        assert event.details["operator"] == OPERATOR
    still = await bus.get_command("orders", seeded["timeouts"][2])
    assert still is not None and still.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE


async def test_complete_with_a_result(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    seeded = await _seed(bus, pool, schema)
    target = seeded["other"][0]
    page = await client.get(f"/commands/billing/{target}")
    assert 'value="complete"' in page.text
    form = {"csrf_token": csrf(page), "id": str(target), "action": "complete"}
    confirm = await client.post("/tsq/confirm", data=form)
    assert 'data-count="1"' in confirm.text
    hidden = _confirm_form(confirm, reason="sent by hand", result='{"invoice": "manual"}')
    hidden["id"] = str(target)
    done = await client.post("/tsq/apply", data=hidden)
    assert done.status_code == 200, done.text
    meta = await bus.get_command("billing", target)
    assert meta is not None and meta.status == CommandStatus.COMPLETED
    assert meta.result == {"invoice": "manual"}


async def test_paging_through_the_queue_by_cursor(
    viewer: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    anon = viewer
    ids = await send(bus, 60)
    await park(pool, schema, ids)
    first = await anon.get("/tsq")
    found = re.search(r'href="([^"]+)" id="next"', first.text)
    assert found, "no next page link"
    second = await anon.get(found.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    shown = set(re.findall(r'name="id" value="([0-9a-f-]{36})"', first.text))
    more = set(re.findall(r'name="id" value="([0-9a-f-]{36})"', second.text))
    assert len(shown) == 50 and len(more) == 10
    assert shown | more == {str(i) for i in ids}


async def test_all_matching_needs_a_filter_as_in_the_cli(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    seeded = await _seed(bus, pool, schema)
    page = await client.get("/tsq")
    assert 'id="select-all"' not in page.text and 'id="select-all-hint"' in page.text
    refused = await client.post(
        "/tsq/confirm", data={"csrf_token": csrf(page), "all": "1", "action": "retry"}
    )
    assert refused.status_code == 400 and "filter the queue first" in refused.text
    for command_id in seeded["declined"]:
        meta = await bus.get_command("orders", command_id)
        assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
    filtered = await client.get("/tsq", params={"domain": "billing"})
    assert 'id="select-all"' in filtered.text


async def test_counts_have_their_thousands_separated_everywhere(
    client: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    await park(pool, schema, await send(bus, 1002))
    page = await client.get("/tsq", params={"domain": "orders"})
    assert "1,002 matching" in page.text
    form = {"csrf_token": csrf(page), "domain": "orders", "all": "1", "action": "retry"}
    confirm = await client.post("/tsq/confirm", data=form)
    text = re.sub(r'"[^"]*"', "", confirm.text)  # attribute values aside (data-count)
    assert "Retry 1,002 commands?" in text and "<strong>1,002</strong>" in text
    assert "Retry 1,002 commands</button>" in text and "… and 982 more" in text
    assert "1002" not in text


async def test_a_selection_larger_than_the_count_cap_is_confirmed_as_more_than(
    client: httpx.AsyncClient,
    bus: CommandBus,
    pool: AsyncConnectionPool,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from commandbus_web import actions

    monkeypatch.setattr(actions, "PREVIEW_CAP", 5)
    ids = await send(bus, 8)
    await park(pool, schema, ids)
    page = await client.get("/tsq", params={"domain": "orders"})
    form = {"csrf_token": csrf(page), "domain": "orders", "all": "1", "action": "retry"}
    confirm = await client.post("/tsq/confirm", data=form)
    assert "<strong>More than 5</strong>" in confirm.text
    assert 'name="limit" value="all"' in confirm.text
    late = await send(bus, 1)
    await park(pool, schema, late)  # parked after the confirmation: left alone
    applied = await client.post("/tsq/apply", data=_confirm_form(confirm, reason="all of them"))
    assert 'data-count="8"' in applied.text
    meta = await bus.get_command("orders", late[0])
    assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE
