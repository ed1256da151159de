"""The database-free unit layer: the pure modules (outcomes, saga advance, send
preparation, troubleshooting filters, validation), tested without a server.

``hatch test tests/unit`` (or ``-m unit``) runs them in seconds, with no PostgreSQL at
all: a test here that asks for a database fixture fails at once, so the layer stays
free of I/O. Whatever reaches the database is tested in ``tests/core`` and friends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent

#: The fixtures that reach a server (the shipped plugin's and the repository's own).
DATABASE_FIXTURES = frozenset(
    {"database_url", "server_url", "schema", "pool", "bus", "sync_pool", "sync_bus"}
    | {"fresh_database", "tables", "app", "client", "anon"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _no_database(request: pytest.FixtureRequest) -> None:
    reached = sorted(
        name
        for name in request.fixturenames
        if name in DATABASE_FIXTURES or name.startswith("commandbus_")
    )
    if reached:
        pytest.fail(f"a unit test needs no database; it asked for {reached}", pytrace=False)
