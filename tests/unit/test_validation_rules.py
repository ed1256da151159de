"""The argument checks every public entry point shares (``commandbus._validation``), and
the refusals of ``core/test_validation.py`` that happen before any I/O, on a pool that is
never opened: a check that came after a query would fail here with ``PoolClosed``."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from commandbus import CommandBus, ValidationError, migrate, migration_sql
from commandbus._validation import check_name, check_schema, check_text
from core.test_validation import BAD_NAMES, BAD_QUERIES, BAD_SCHEMAS, _case_id

pytestmark = pytest.mark.anyio


@pytest.fixture
def offline() -> AsyncConnectionPool:
    return AsyncConnectionPool("", open=False)


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_names_are_refused(bad: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        check_name("domain", bad)
    assert caught.value.field == "domain"


@pytest.mark.parametrize("good", ["payments", "a.b-c_d", "X" * 128])
def test_good_names_pass_unchanged(good: str) -> None:
    assert check_name("domain", good) == good


@pytest.mark.parametrize("bad", BAD_SCHEMAS, ids=repr)
async def test_a_bad_schema_is_refused_before_any_io(
    offline: AsyncConnectionPool, bad: Any
) -> None:
    with pytest.raises(ValidationError):
        check_schema(bad)
    with pytest.raises(ValidationError):
        CommandBus(offline, schema=bad)
    with pytest.raises(ValidationError):
        await migrate(offline, schema=bad)
    with pytest.raises(ValidationError):
        migration_sql(bad)


@pytest.mark.parametrize("case", BAD_QUERIES, ids=_case_id)
async def test_bad_query_filters_are_refused_before_any_io(
    offline: AsyncConnectionPool, case: tuple[str, Any]
) -> None:
    field, value = case
    with pytest.raises(ValidationError) as caught:
        await CommandBus(offline).query_commands(**{field: value})
    assert caught.value.field == field


@pytest.mark.parametrize("bad", ["a\x00b", "\udc80", 5, ""], ids=repr)
def test_free_text_is_refused_when_it_cannot_be_stored(bad: Any) -> None:
    with pytest.raises(ValidationError):
        check_text("reason", bad, optional=False)
    assert check_text("reason", None, optional=True) is None
