"""A send checked and turned into statement parameters before any I/O.

The bad inputs are those of ``core/test_validation.py``, where the bus refuses them and
the database shows nothing written; here the rule itself, for each, in microseconds.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from commandbus import DuplicateCommandError, SendRequest, ValidationError
from commandbus._channels import command_channel
from commandbus._send import prepare_send
from core.test_validation import BAD_SEND_ARGUMENTS, VALID, _case_id


def prepare(*requests: SendRequest, **options: Any) -> Any:
    return prepare_send(requests, schema="cb", default_max_attempts=3, **options)


@pytest.mark.parametrize("case", BAD_SEND_ARGUMENTS, ids=_case_id)
def test_each_bad_argument_is_refused_naming_its_field(case: tuple[str, Any]) -> None:
    field, value = case
    with pytest.raises(ValidationError) as caught:
        prepare(SendRequest(**{**VALID, field: value}))
    assert caught.value.field == field


def test_a_send_becomes_one_json_array_with_defaults_applied() -> None:
    first = SendRequest("payments", "Charge", uuid.uuid4(), {"amount": 1}, priority=2)
    later = SendRequest("mail", "Send", uuid.uuid4(), {}, delay=30, max_attempts=5)
    prepared = prepare(first, later)
    rows = json.loads(prepared.params["commands"])
    assert [(r["domain"], r["max_attempts"], r["priority"], r["delay"]) for r in rows] == [
        ("payments", 3, 2, 0),
        ("mail", 5, 0, 30.0),
    ]
    assert rows[0]["data"] == {"amount": 1}
    # Only a domain with a command due now is notified.
    assert prepared.params["channels"] == command_channel("cb", "payments")
    assert prepared.keys == (("payments", first.command_id), ("mail", later.command_id))


def test_a_bad_request_in_a_batch_is_named_by_its_position() -> None:
    good = SendRequest("payments", "Charge", uuid.uuid4(), {})
    bad = SendRequest("payments", "Charge", uuid.uuid4(), {"x": float("nan")})
    with pytest.raises(ValidationError, match=r"requests\[1\]"):
        prepare(good, bad)


def test_duplicates_within_a_send_and_empty_sends_are_refused() -> None:
    command_id = uuid.uuid4()
    same = SendRequest("payments", "Charge", command_id, {})
    with pytest.raises(DuplicateCommandError):
        prepare(same, same)
    with pytest.raises(ValidationError, match="at least one"):
        prepare_send([], schema="cb", default_max_attempts=3)


def test_data_over_the_size_limit_is_refused() -> None:
    big = SendRequest("payments", "Charge", uuid.uuid4(), {"blob": "x" * 2_000})
    with pytest.raises(ValidationError) as caught:
        prepare(big, max_data_bytes=1_000)
    assert caught.value.field == "data"
    assert prepare(big, max_data_bytes=None).keys
