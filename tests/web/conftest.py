"""Fixtures of the console tests: the app on the test's migrated schema, and clients.

The app shares the test's pool (one event loop), and is driven through httpx's ASGI
transport: the same requests as Starlette's TestClient, without a second loop. One test
(test_app.py) runs the DSN form under TestClient with its lifespan.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from commandbus_web import BasicAuth, Role, create_app, hash_password

OPERATOR = "alice"
PASSWORD = "s3cret-Pa55word"
VIEWER = "victor"
VIEWER_PASSWORD = "look-but-do-not-touch"
SECRET = b"test-secret"


def basic(user: str = OPERATOR, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD, iterations=1000)


@pytest.fixture(scope="session")
def viewer_hash() -> str:
    return hash_password(VIEWER_PASSWORD, iterations=1000)


def accounts(password_hash: str, viewer_hash: str) -> BasicAuth:
    """An operator (alice) and a viewer (victor)."""
    return BasicAuth(OPERATOR, password_hash).add(VIEWER, viewer_hash, role=Role.VIEWER)


@pytest.fixture
def app(pool: AsyncConnectionPool, schema: str, password_hash: str, viewer_hash: str) -> Starlette:
    return create_app(pool, schema=schema, auth=accounts(password_hash, viewer_hash), secret=SECRET)


@pytest.fixture
async def anon(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A visitor who has not signed in."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
        yield c


@pytest.fixture
async def viewer(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A viewer, signed in with HTTP Basic: reads everything, acts on nothing."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://console.test",
        headers=basic(VIEWER, VIEWER_PASSWORD),
    ) as c:
        yield c


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The operator, signed in with HTTP Basic."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://console.test", headers=basic()
    ) as c:
        yield c
