"""Fixtures of the core tests."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from core._tables import Tables


@pytest.fixture
def tables(pool: AsyncConnectionPool, schema: str) -> Tables:
    return Tables(pool, schema)
