"""The example shop (examples/django_shop), end to end, as its README runs it: migrate,
a worker from manage.py, the site under runserver. A view enqueues two tasks in its
transaction; the worker ships the order; the invoice fails while the mailer is down and
waits in the troubleshooting queue; an operator signed in to Django retries it from the
console; it succeeds."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_shop"

pytestmark = pytest.mark.slow


class Site:
    """The project's manage.py and its running site, with one signed-in browser."""

    def __init__(self, env: dict[str, str], port: int, logs: Path) -> None:
        self.env = env
        self.base = f"http://127.0.0.1:{port}"
        self.logs = logs
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        body = None if data is None else urllib.parse.urlencode(data).encode()
        req = urllib.request.Request(self.base + path, data=body, method="POST" if body else None)
        if body is not None:
            req.add_header("Origin", self.base)
            req.add_header("Referer", self.base + path)
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post_json(self, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get_json(self, path: str) -> Any:
        status, text = self.request(path)
        assert status == 200, text
        return json.loads(text)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found, f"no {name} on the page"
    return found.group(1)


@pytest.fixture
def site(fresh_database: str, tmp_path: Path) -> Iterator[Site]:
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database,
        "DJANGO_SUPERUSER_PASSWORD": "correct horse",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    running = Site(env, free_port(), tmp_path)
    running.manage("migrate", "--noinput")
    running.manage(
        "createsuperuser", "--noinput", "--username", "ada", "--email", "ada@example.com"
    )
    processes = []
    try:
        for name, args in (
            # --processes: a supervised worker process, which sets Django up itself
            ("worker", ["commandbus", "worker", "--concurrency", "2", "--processes", "1"]),
            ("server", ["runserver", "--noreload", running.base.removeprefix("http://")]),
        ):
            log = (tmp_path / f"{name}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", *args],
                    cwd=PROJECT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_for(lambda: _answers(running), "runserver")
        yield running
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(site: Site) -> bool:
    try:
        site.request("/admin/login/")
    except OSError:
        return False
    return True


def test_the_example_shop_end_to_end(site: Site) -> None:
    # A view enqueues two tasks in its transaction; the worker runs them.
    status, placed = site.post_json("/orders/")
    assert status == 201, placed
    order = f"/orders/{placed['order']}/"
    wait_for(lambda: site.get_json(order)["invoice"] == "FAILED", "the invoice to fail")
    assert site.get_json(order)["state"] == "shipped"

    # A request that fails after enqueueing leaves nothing behind.
    status, declined = site.post_json("/orders/?fail=1")
    assert status == 402, declined
    with psycopg.connect(site.env["DATABASE_URL"], autocommit=True) as db:
        kinds = db.execute("SELECT command_type FROM commandbus.commands ORDER BY 1").fetchall()
        assert kinds == [("orders.tasks.send_invoice",), ("orders.tasks.ship",)]
        assert db.execute("SELECT count(*) FROM orders_order").fetchone() == (1,)
    parked = json.loads(site.manage("commandbus", "tsq", "list", "--json"))
    assert [item["command_id"] for item in parked] == [placed["invoice"]]

    # The mailer is back; an operator signs in to Django and retries from the console.
    with psycopg.connect(site.env["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO orders_mailer (up) VALUES (true)")
    status, page = site.request("/commandbus/tsq")
    assert status == 200 and "Log in" in page  # sent to Django's sign-in first
    status, page = site.request(
        "/admin/login/?next=/commandbus/tsq",
        {
            "username": "ada",
            "password": "correct horse",
            "csrfmiddlewaretoken": token(page, "csrfmiddlewaretoken"),
            "next": "/commandbus/tsq",
        },
    )
    assert status == 200 and "orders.tasks.send_invoice" in page
    form = {
        "csrf_token": token(page, "csrf_token"),
        "action": "retry",
        "id": placed["invoice"],
        "limit": "1",
    }
    status, applied = site.request("/commandbus/tsq/apply", form)
    assert status == 200, applied
    wait_for(lambda: site.get_json(order)["invoice"] == "SUCCESSFUL", "the retried invoice")
    assert site.get_json(order)["state"] == "invoiced"
    with psycopg.connect(site.env["DATABASE_URL"], autocommit=True) as db:
        (details,) = db.execute(
            "SELECT details FROM commandbus.audit WHERE event_type = 'OPERATOR_RETRY'"
        ).fetchone()
    assert details["operator"] == "ada"  # the Django user, in the audit trail
