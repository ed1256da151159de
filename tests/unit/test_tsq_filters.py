"""The troubleshooting queue's search and bulk inputs, checked before any query."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from commandbus import TroubleshootingCursor, TroubleshootingFilter, ValidationError
from commandbus._tsq_filter import MAX_IDS, check_limit, cursor_params, filter_params


def test_an_empty_filter_is_refused_for_bulk_actions_only() -> None:
    with pytest.raises(ValidationError, match="at least one criterion"):
        filter_params(TroubleshootingFilter(), required=True)
    everything = filter_params(None, required=False)
    assert set(everything.values()) == {None}


def test_a_filter_becomes_its_query_parameters() -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    since = datetime(2026, 1, 1, tzinfo=UTC)
    params = filter_params(
        TroubleshootingFilter(
            domain="payments", error_code="GATEWAY", parked_after=since, command_ids=ids
        ),
        required=True,
    )
    assert params["domain"] == "payments" and params["error_code"] == "GATEWAY"
    assert params["parked_after"] == since and params["command_ids"] == ids


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"domain": "bad name"}, "domain"),
        ({"command_type": ""}, "command_type"),
        ({"error_code": "a\x00b"}, "error_code"),
        ({"error_type": "\udc80"}, "error_type"),
        ({"parked_before": datetime(2026, 1, 1)}, "parked_before"),  # naive
        ({"command_ids": []}, "command_ids"),
        ({"command_ids": "not-a-list"}, "command_ids"),
        ({"command_ids": ["not-a-uuid"]}, "command_ids"),
        ({"command_ids": [uuid.UUID(int=5)] * (MAX_IDS + 1)}, "command_ids"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_criteria_are_refused_naming_the_field(where: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        filter_params(TroubleshootingFilter(**where), required=False)
    assert caught.value.field == field


def test_limits_and_cursors() -> None:
    assert check_limit(None) is None and check_limit(5) == 5
    for bad in (0, -1, True, 2.0, "3"):
        with pytest.raises(ValidationError):
            check_limit(bad)
    assert set(cursor_params(None).values()) == {None}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    command_id = uuid.uuid4()
    assert cursor_params(TroubleshootingCursor(at, "payments", command_id)) == {
        "after_parked_at": at,
        "after_domain": "payments",
        "after_command_id": command_id,
    }
    with pytest.raises(ValidationError) as caught:
        cursor_params("page-2")
    assert caught.value.field == "after"
