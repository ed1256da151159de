"""Sign-in protects every route once configured; viewers read, operators act, and an
``authorize`` callback decides finer; trusted headers only from the proxy; password checks
off the event loop, few at a time, slower for a client that keeps failing."""

from __future__ import annotations

import logging
import threading
import time

import anyio
import anyio.lowlevel
import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from commandbus import CommandBus, CommandStatus
from commandbus_web import (
    Action,
    BasicAuth,
    Role,
    TrustedHeaderAuth,
    User,
    basic_auth_from_env,
    create_app,
    default_authorize,
    environment_warnings,
    hash_password,
)
from commandbus_web.throttle import FREE_FAILURES, MAX_WAIT, Backoff
from core.helpers import wait_until
from web.conftest import OPERATOR, PASSWORD, basic
from web.helpers import csrf, park, send

SOME_ID = "0b6a3a52-5c1e-4a8e-9f77-2a7f3f0c2d11"


# -- every route -----------------------------------------------------------------------


async def test_sign_in_protects_every_route(
    anon: httpx.AsyncClient, bus: CommandBus, pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await send(bus, 1, secret_note="card 4111")
    await park(pool, schema, ids, traceback='File "/srv/app/payments.py", line 3')
    gets = [
        "/",
        "/overview/live",
        "/tsq",
        "/commands",
        f"/commands/orders/{ids[0]}",
        "/batches",
        f"/batches/orders/{SOME_ID}",
        "/processes",
        f"/processes/{SOME_ID}",
        "/workers",
        "/replies",
        "/domains/orders/pause",
        "/static/htmx.min.js",
        "/static/console.css",
        "/no-such-page",
    ]
    for path in gets:
        response = await anon.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Basic realm="), path
        assert "card 4111" not in response.text and "payments.py" not in response.text
    posts = ["/tsq/confirm", "/tsq/apply", f"/commands/orders/{ids[0]}/cancel", "/replies/1/retry"]
    for path in [*posts, "/domains/orders/pause", "/domains/orders/resume"]:
        assert (await anon.post(path, data={"reason": "x"})).status_code == 401, path
    wrong = await anon.get("/", headers=basic(password="not-the-password"))
    assert wrong.status_code == 401


async def test_anonymous_read_only_by_an_explicit_option(
    pool: AsyncConnectionPool, schema: str, password_hash: str
) -> None:
    for anonymous_read, status in ((False, 401), (True, 200)):
        app = create_app(
            pool,
            schema=schema,
            auth=BasicAuth(OPERATOR, password_hash),
            anonymous_read=anonymous_read,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/tsq")).status_code == status
            assert (await c.get("/static/console.css")).status_code == status


async def test_a_custom_auth_that_names_nobody_gets_a_403_page(
    pool: AsyncConnectionPool, schema: str
) -> None:
    app = create_app(pool, schema=schema, auth=lambda request: None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/")
    assert response.status_code == 403
    assert "Sign in required" in response.text
    assert "content-security-policy" in response.headers


# -- roles and authorize -----------------------------------------------------------------


def test_default_authorize_viewers_view_operators_act() -> None:
    viewer, operator = User("v", Role.VIEWER), User("o", Role.OPERATOR)
    for action in Action:
        assert default_authorize(operator, action)
        assert default_authorize(viewer, action) == (action == Action.VIEW)


async def test_authorize_decides_each_action(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus, password_hash: str
) -> None:
    """Oban-style: the host's callback sees the user and the action, async if it likes."""
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    asked: list[tuple[str, str]] = []

    async def authorize(user: User, action: Action) -> bool:
        asked.append((user.name, action.value))
        if user.name == "mallory":
            return False
        return action in (Action.VIEW, Action.RETRY)

    auth = BasicAuth(OPERATOR, password_hash).add("mallory", password_hash)
    app = create_app(pool, schema=schema, auth=auth, authorize=authorize, secret=b"k")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=basic()) as c:
        page = await c.get("/tsq")
        assert 'id="retry"' in page.text and 'id="cancel"' not in page.text
        form = {"csrf_token": csrf(page), "id": str(ids[0])}
        assert (await c.post("/tsq/confirm", data={**form, "action": "retry"})).status_code == 200
        refused = await c.post("/tsq/confirm", data={**form, "action": "cancel"})
        assert refused.status_code == 403 and "may not cancel" in refused.text
        detail = await c.get(f"/commands/orders/{ids[0]}")
        assert 'value="retry"' in detail.text and 'value="cancel"' not in detail.text
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers=basic("mallory", PASSWORD)
    ) as c:
        response = await c.get("/")
        assert response.status_code == 403
        assert "mallory may not use this console" in response.text
    assert (OPERATOR, "cancel") in asked and ("mallory", "view") in asked


# -- trusted header ----------------------------------------------------------------------


def test_a_trusted_header_needs_the_proxy_or_a_loud_opt_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ValueError, match="needs the proxy's address"):
        TrustedHeaderAuth("X-Forwarded-User")
    caplog.set_level(logging.WARNING, "commandbus.web")
    TrustedHeaderAuth("X-Forwarded-User", trust_any_client=True)
    assert "INSECURE" in caplog.text and "ANY client" in caplog.text
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedHeaderAuth("X-Forwarded-User", trusted_proxies={"proxy.internal"})


def test_a_trusted_header_only_from_the_proxy(caplog: pytest.LogCaptureFixture) -> None:
    auth = TrustedHeaderAuth("X-Forwarded-User", trusted_proxies={"10.0.0.1", "192.168.0.0/16"})
    assert auth(_request({"X-Forwarded-User": "carol"}, client="10.0.0.1")) == User("carol")
    assert auth(_request({"X-Forwarded-User": "carol"}, client="192.168.7.9")) == User("carol")
    caplog.set_level(logging.WARNING, "commandbus.web")
    assert auth(_request({"X-Forwarded-User": "ceo@corp"}, client="10.0.0.2")) is None
    assert "ignored X-Forwarded-User sent by 10.0.0.2" in caplog.text
    assert auth(_request({}, client="10.0.0.1")) is None
    scoped = TrustedHeaderAuth("X-User", trusted_proxies={"10.0.0.1"}, operators={"ann"})
    assert scoped(_request({"X-User": "ann"}, client="10.0.0.1")) == User("ann", Role.OPERATOR)
    assert scoped(_request({"X-User": "bo"}, client="10.0.0.1")) == User("bo", Role.VIEWER)


async def test_a_repeated_trusted_header_is_refused(pool: AsyncConnectionPool, schema: str) -> None:
    auth = TrustedHeaderAuth("X-Forwarded-User", trusted_proxies={"127.0.0.1"})
    app = create_app(pool, schema=schema, auth=auth)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        headers = [("X-Forwarded-User", "ceo@corp"), ("X-Forwarded-User", "intern")]
        response = await c.get("/", headers=headers)
        assert response.status_code == 400
        assert "sent 2 times" in response.text
        assert "content-security-policy" in response.headers
        assert (await c.get("/", headers={"X-Forwarded-User": "intern"})).status_code == 200


async def test_trusted_header_user_goes_to_the_audit(
    pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    auth = TrustedHeaderAuth("X-Forwarded-User", trusted_proxies={"127.0.0.0/8"})
    app = create_app(pool, schema=schema, auth=auth)
    ids = await send(bus, 1)
    await park(pool, schema, ids)
    transport = httpx.ASGITransport(app=app)
    headers = {"X-Forwarded-User": "proxy-carol"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        page = await c.get("/tsq")
        confirm = await c.post(
            "/tsq/confirm", data={"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry"}
        )
        assert 'data-count="1"' in confirm.text
        done = await c.post(
            "/tsq/apply",
            data={"csrf_token": csrf(page), "id": str(ids[0]), "action": "retry", "limit": "1"},
        )
        assert done.status_code == 200, done.text
    trail = await bus.get_audit_trail(ids[0])
    assert [e.details["operator"] for e in trail if e.event_type == "OPERATOR_RETRY"] == [
        "proxy-carol"
    ]
    meta = await bus.get_command("orders", ids[0])
    assert meta is not None and meta.status == CommandStatus.PENDING


# -- HTTP Basic ----------------------------------------------------------------------------


def _slow_auth(
    password_hash: str, gate: threading.Event, inside: list[int], **limits: int
) -> BasicAuth:
    """A BasicAuth whose password check blocks until ``gate`` opens (or 5 s pass)."""
    auth = BasicAuth(OPERATOR, password_hash, **limits)
    check, role = auth._accounts[OPERATOR]
    lock = threading.Lock()

    def slow(password: str) -> bool:
        with lock:
            inside.append(len(inside) + 1)
        gate.wait(5)
        return check(password)

    auth._accounts[OPERATOR] = (slow, role)
    return auth


async def test_password_checks_run_off_the_event_loop(password_hash: str) -> None:
    gate, inside = threading.Event(), []  # type: threading.Event, list[int]
    auth = _slow_auth(password_hash, gate, inside)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        result: list[User | None] = []

        async def sign_in() -> None:
            result.append(await auth(_request(basic())))

        tg.start_soon(sign_in)
        await anyio.lowlevel.checkpoint()  # let it start its check
        # While a check is in progress, the loop keeps serving: this sleep ends on time.
        with anyio.fail_after(2):
            await anyio.sleep(0.05)
        gate.set()
    assert result == [User(OPERATOR)]
    assert time.monotonic() - started < 4, "the check blocked the event loop"


async def test_password_checks_are_bounded(password_hash: str) -> None:
    gate, inside = threading.Event(), []  # type: threading.Event, list[int]
    auth = _slow_auth(password_hash, gate, inside, max_checks=2, max_waiting=3)
    outcomes: list[object] = []

    async def sign_in(n: int) -> None:
        try:
            outcomes.append(
                await auth(_request(basic(password=f"wrong-{n}"), client=f"10.0.0.{n}"))
            )
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(sign_in, n)

        async def two_inside() -> bool:
            return len(inside) >= 2

        await wait_until(two_inside, timeout=5, what="two checks running")
        await anyio.sleep(0.1)  # time for a third to start, were it allowed: it must not
        assert len(inside) == 2, "more checks ran at once than max_checks"
        await sign_in(3)  # a fourth while three wait: refused at once, not queued
        assert outcomes == ["SignInThrottled"]
        gate.set()
    assert sorted(map(str, outcomes)) == ["None", "None", "None", "SignInThrottled"]


async def test_a_browsers_parallel_requests_share_one_password_check(password_hash: str) -> None:
    gate, inside = threading.Event(), []  # type: threading.Event, list[int]
    auth = _slow_auth(password_hash, gate, inside, max_checks=2, max_waiting=2)
    users: list[User | None] = []

    async def sign_in() -> None:
        users.append(await auth(_request(basic())))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(sign_in)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert users == [User(OPERATOR)] * 20
    assert len(inside) == 1


async def test_failed_sign_ins_back_off_per_client_and_are_logged(
    pool: AsyncConnectionPool, schema: str, password_hash: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "commandbus.web")
    app = create_app(pool, schema=schema, auth=BasicAuth(OPERATOR, password_hash))
    attacker = httpx.ASGITransport(app=app, client=("203.0.113.9", 5555))
    async with httpx.AsyncClient(transport=attacker, base_url="http://t") as c:
        for n in range(FREE_FAILURES):
            response = await c.get("/", headers=basic(password=f"guess-{n}"))
            assert response.status_code == 401
        # Now even the right password waits: the attempt is not checked at all.
        throttled = await c.get("/", headers=basic())
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        assert "content-security-policy" in throttled.headers
    assert f"sign-in failed from 203.0.113.9 ({FREE_FAILURES} in a row)" in caplog.text
    assert "sign-in from 203.0.113.9 refused: too many failures" in caplog.text
    assert all(r.levelno == logging.WARNING for r in caplog.records if "sign-in" in r.message)
    # Another client is not held back by the attacker's failures.
    other = httpx.ASGITransport(app=app, client=("198.51.100.7", 5555))
    async with httpx.AsyncClient(transport=other, base_url="http://t", headers=basic()) as c:
        assert (await c.get("/")).status_code == 200


def test_backoff_doubles_and_forgets_on_success() -> None:
    now = [1000.0]
    backoff = Backoff(clock=lambda: now[0])
    for _ in range(FREE_FAILURES - 1):
        backoff.failure("a")
        assert backoff.wait("a") == 0
    backoff.failure("a")
    assert backoff.wait("a") == 1
    now[0] += 1
    assert backoff.wait("a") == 0
    backoff.failure("a")
    assert backoff.wait("a") == 2
    for _ in range(40):
        backoff.failure("a")
    assert backoff.wait("a") == MAX_WAIT
    backoff.success("a")
    assert backoff.wait("a") == 0
    assert backoff.wait("b") == 0


def test_passwords_have_a_minimum_length_and_plain_ones_are_salted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="at least 12 characters"):
        hash_password("x")
    with pytest.raises(ValueError, match=r"COMMANDBUS_WEB_PASSWORD: .*at least 12"):
        basic_auth_from_env({"COMMANDBUS_WEB_USER": "bob", "COMMANDBUS_WEB_PASSWORD": "pw"})
    import commandbus_web.auth as auth_module

    made: list[str] = []

    def recording(password: str, **kwargs: int) -> str:
        made.append(hash_password(password, iterations=1000))
        return made[-1]

    monkeypatch.setattr(auth_module, "hash_password", recording)
    env = {"COMMANDBUS_WEB_USER": "bob", "COMMANDBUS_WEB_PASSWORD": "a-long-enough-one"}
    first, second = basic_auth_from_env(env), basic_auth_from_env(env)
    assert first is not None and second is not None
    assert len(made) == 2 and all(h.startswith("pbkdf2_sha256$") for h in made)
    assert made[0].split("$")[2] != made[1].split("$")[2], "the same salt twice"


async def test_basic_auth_from_the_environment_with_roles() -> None:
    assert basic_auth_from_env({}) is None
    env = {
        "COMMANDBUS_WEB_USER": "bob",
        "COMMANDBUS_WEB_PASSWORD_HASH": hash_password("bobs-password", iterations=1000),
        "COMMANDBUS_WEB_VIEWER": "vic",
        "COMMANDBUS_WEB_VIEWER_PASSWORD": "vics-password",
    }
    auth = basic_auth_from_env(env)
    assert auth is not None and auth.accounts == {"bob": Role.OPERATOR, "vic": Role.VIEWER}
    assert await auth(_request(basic("bob", "bobs-password"))) == User("bob", Role.OPERATOR)
    assert await auth(_request(basic("vic", "vics-password"))) == User("vic", Role.VIEWER)
    assert await auth(_request(basic("bob", "vics-password"))) is None
    assert await auth(_request(basic("eve", "bobs-password"))) is None
    assert await auth(_request({"Authorization": "Basic !!!"})) is None
    twice = [("Authorization", basic("bob", "bobs-password")["Authorization"])] * 2
    assert await auth(_request(dict(twice), repeated=twice)) is None
    with pytest.raises(ValueError, match="COMMANDBUS_WEB_PASSWORD_HASH"):
        basic_auth_from_env({"COMMANDBUS_WEB_USER": "bob"})
    with pytest.raises(ValueError, match="no longer accepted"):
        BasicAuth("bob", "sha256$" + "0" * 64)


def test_environment_variables_that_look_misspelt_are_warned_about() -> None:
    env = {
        "COMMANDBUS_WEB_USERNAME": "ops",
        "COMANDBUS_WEB_PASSWORD": "x",
        "COMMANDBUS_WEB_USER": "ok",
        "COMMANDBUS_SCHEMA": "unrelated",
        "PATH": "/bin",
    }
    warnings = environment_warnings(env)
    assert len(warnings) == 2
    assert "COMMANDBUS_WEB_USERNAME" in warnings[1] and "COMMANDBUS_WEB_USER?" in warnings[1]
    assert "COMANDBUS_WEB_PASSWORD" in warnings[0] and "COMMANDBUS_WEB_PASSWORD?" in warnings[0]


async def test_the_mode_is_said_at_start(
    pool: AsyncConnectionPool, schema: str, password_hash: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "commandbus.web")
    open_app = create_app(pool, schema=schema)
    assert open_app.state.mode.startswith("read-only, no sign-in")
    basic_app = create_app(
        pool,
        schema=schema,
        auth=BasicAuth(OPERATOR, password_hash).add("vic", password_hash, role=Role.VIEWER),
        trusted_proxies=["10.0.0.0/8"],
    )
    assert basic_app.state.mode == (
        "sign-in: HTTP Basic (operators: alice; viewers: vic); every page needs it; "
        "forwarded headers trusted from 10.0.0.0/8"
    )
    header_app = create_app(
        pool,
        schema=schema,
        auth=TrustedHeaderAuth("X-User", trust_any_client=True, operators=["ann"]),
        anonymous_read=True,
    )
    assert "from ANY client (INSECURE)" in header_app.state.mode
    assert "operators: ann; others are viewers" in header_app.state.mode
    assert "visitors who are not signed in may read" in header_app.state.mode
    assert f"console: {basic_app.state.mode}" in caplog.text


def _request(
    headers: dict[str, str],
    *,
    client: str = "127.0.0.1",
    repeated: list[tuple[str, str]] | None = None,
) -> Request:
    pairs = repeated if repeated is not None else list(headers.items())
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in pairs],
        "client": (client, 1234),
    }
    return Request(scope)
