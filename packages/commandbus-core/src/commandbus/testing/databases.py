"""Throwaway databases for tests: one migrated template, cloned for each test.

A test that gets a database of its own cannot touch anything outside it, whatever its
code does: ``CommandBus(pool)`` and ``Worker(pool, ...)`` with their default schema,
``DATABASE_URL`` read at run time, tables created without a schema. Cloning a migrated
template (``CREATE DATABASE ... TEMPLATE``) costs a few tens of milliseconds; migrating
is paid once per template.

Every statement runs on a connection to the server's URL (the database it names is only
where ``CREATE DATABASE`` and ``DROP DATABASE`` are sent from: nothing is written into
it). The role needs the ``CREATEDB`` privilege.

:meth:`DatabaseTemplate.database` keeps the next clone ready and drops used ones in a
background thread: a test waits for neither (``DROP DATABASE`` waits for a checkpoint and
for every backend of the server to acknowledge it, ~70 ms on a busy machine).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from commandbus._validation import check_schema
from commandbus.migrations import migration_sql

__all__ = ["DatabaseTemplate", "database_url"]

log = logging.getLogger("commandbus.testing")

#: Every database made here starts with this, so that leftovers of a killed run are easy
#: to find (``SELECT datname FROM pg_database WHERE datname LIKE 'commandbus_test_%'``).
PREFIX = "commandbus_test_"


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database name replaced by ``name``."""
    return make_conninfo("", **{**conninfo_to_dict(server_url), "dbname": name})


class DatabaseTemplate:
    """A database on ``server_url`` with the bus's tables migrated into ``schemas``, and
    clones of it for tests. ``with DatabaseTemplate(url) as template:`` creates it and
    drops it at the end (with the clones not yet dropped); ``with template.database() as
    url:`` gives one clone.

    ``copy_files=True`` clones with ``STRATEGY FILE_COPY`` (PostgreSQL 15+): it forces
    checkpoints, cheap on a throwaway server without fsync, and writes almost no WAL (the
    default strategy logs every page of the copy); leave it off on a real server."""

    def __init__(
        self,
        server_url: str,
        *,
        schemas: Sequence[str] = ("commandbus",),
        copy_files: bool = False,
    ) -> None:
        for schema in schemas:
            check_schema(schema)
        self.server_url = server_url
        self.schemas = tuple(schemas)
        self.name = f"{PREFIX}template_{uuid.uuid4().hex[:12]}"
        self._copy_files = copy_files
        self._created = False
        self._admin: psycopg.Connection | None = None
        self._background: ThreadPoolExecutor | None = None
        self._next: Future[str] | None = None
        self._used: str | None = None  # the last clone handed out, dropped at the next

    def create(self) -> None:
        """Create the template and migrate its schemas (with :func:`migration_sql`, the
        same statements as :func:`commandbus.migrate`)."""
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(self.name))
        )
        self._created = True
        # Closed at once: no connection may stay open on a template while it is cloned.
        with psycopg.connect(database_url(self.server_url, self.name), autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(migration_sql(schema).encode(), prepare=False)
            if self._copy_files and conn.info.server_version < 150000:
                self._copy_files = False  # the only strategy before PostgreSQL 15

    def clone(self) -> str:
        """A new database copied from the template; returns its URL."""
        if not self._created:
            raise RuntimeError("create() the template before cloning it")
        name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
        strategy = sql.SQL(" STRATEGY FILE_COPY" if self._copy_files else "")
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                sql.Identifier(name), sql.Identifier(self.name), strategy
            )
        )
        return database_url(self.server_url, name)

    def drop_clone(self, url: str) -> None:
        """Drop a clone, ending whatever connections a test left on it."""
        name = conninfo_to_dict(url).get("dbname", "")
        if not (isinstance(name, str) and name.startswith(PREFIX)) or name == self.name:
            raise ValueError(f"{name!r} is not a clone made by this template")
        self._execute(_drop(name))

    @contextmanager
    def database(self) -> Iterator[str]:
        """A clone for the block, dropped afterwards. The clone was made ahead, while the
        previous block ran; it is dropped in the background when the next block starts
        (or at :meth:`drop`), once whatever else the test set up has been torn down."""
        if self._background is None:
            self._background = ThreadPoolExecutor(1, thread_name_prefix="test-database-clones")
        self._drop_used()
        url = self._next.result() if self._next is not None else self._run(self.clone)
        self._next = self._background.submit(self.clone)
        try:
            yield url
        finally:
            self._used = url

    def _drop_used(self) -> None:
        if self._used is not None and self._background is not None:
            used, self._used = self._used, None
            self._background.submit(self._drop_quietly, used)

    def drop(self) -> None:
        """Drop the template, after the background work ended and the clone made ahead
        was dropped (the clones handed out are dropped by :meth:`database`)."""
        try:
            if self._background is not None:
                self._drop_used()
                background, self._background = self._background, None
                if self._next is not None:
                    ahead, self._next = self._next, None
                    if ahead.exception() is None:
                        background.submit(self._drop_quietly, ahead.result())
                background.shutdown(wait=True)
            if self._created:
                self._created = False
                self._execute(_drop(self.name))
        finally:
            if self._admin is not None:
                admin, self._admin = self._admin, None
                admin.close()

    def __enter__(self) -> DatabaseTemplate:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.drop()

    def _run(self, work: Callable[[], str]) -> str:
        """``work()`` in the background thread (the one user of the admin connection once
        clones are handed out), waited for."""
        assert self._background is not None
        return self._background.submit(work).result()

    def _drop_quietly(self, url: str) -> None:
        try:
            self.drop_clone(url)
        except psycopg.Error as exc:  # left for the run's end to report, not a test's
            log.warning("could not drop the test database %s: %s", url, exc)

    def _execute(self, statement: sql.Composed) -> None:
        """Run ``statement`` on one connection to the server kept for the template's life
        (a new one when the last was lost: a test may restart or cut connections)."""
        if self._admin is not None and not self._admin.closed:
            try:
                self._admin.execute(statement)
                return
            except psycopg.OperationalError:
                if not self._admin.broken:
                    raise
                self._admin.close()
        self._admin = psycopg.connect(self.server_url, autocommit=True)
        self._admin.execute(statement)


def _drop(name: str) -> sql.Composed:
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
