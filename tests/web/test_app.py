"""The app factory: a DSN-owned pool under Starlette's TestClient, mounted under a prefix,
and the WSGI recipe (Flask through a2wsgi) from docs/console.md."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from a2wsgi import ASGIMiddleware
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from commandbus import migration_sql
from commandbus_web import TrustedHeaderAuth, create_app


@pytest.fixture
def migrated(database_url: str, schema: str) -> Iterator[str]:
    """The test schema, migrated with a plain connection (these tests are synchronous)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(migration_sql(schema).encode())
        command_id = uuid.uuid4()
        conn.execute(
            f'INSERT INTO "{schema}".commands (domain, command_id, command_type, status, '
            "max_attempts, data, vt) VALUES ('orders', %s, 'Charge', 'PENDING', 3, '{}', now())",
            [command_id],
        )
    yield schema


def test_dsn_app_under_testclient_with_lifespan(database_url: str, migrated: str) -> None:
    app = create_app(database_url, schema=migrated)
    with TestClient(app) as client:
        for path in ("/", "/tsq", "/commands", "/batches", "/processes", "/workers", "/replies"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[-1000:])
        assert "orders" in client.get("/").text
    assert app.state.console._pool is None  # closed by the lifespan


def test_mounted_under_a_prefix(database_url: str, migrated: str) -> None:
    console = create_app(
        database_url,
        schema=migrated,
        auth=TrustedHeaderAuth("X-User", trust_any_client=True),  # TestClient's peer
        secret="k",
    )
    host = Starlette(routes=[Mount("/ops/console", app=console)])
    with TestClient(host, headers={"X-User": "erin"}) as client:
        page = client.get("/ops/console/tsq")
        assert page.status_code == 200
        assert 'href="/ops/console/commands"' in page.text
        assert 'src="/ops/console/static/htmx.min.js"' in page.text
        assert client.get("/ops/console/static/console.css").status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        # The CSRF cookie is scoped to the mount and accepted back.
        response = client.post(
            "/ops/console/tsq/confirm",
            data={"csrf_token": token.group(1), "id": str(uuid.uuid4()), "action": "retry"},
        )
        assert response.status_code == 200, response.text[-1000:]
        assert 'data-count="0"' in response.text


def test_flask_recipe_through_a2wsgi(database_url: str, migrated: str) -> None:
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def home() -> str:
        return "the shop"

    console = create_app(database_url, schema=migrated)
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app,
        {"/console": ASGIMiddleware(console)},  # type: ignore[arg-type, dict-item]
    )
    client = flask_app.test_client()
    assert client.get("/").text == "the shop"
    page = client.get("/console/")
    assert page.status_code == 200
    assert 'href="/console/tsq"' in page.text
    assert "orders" in page.text
    assert client.get("/console/static/htmx.min.js").status_code == 200
