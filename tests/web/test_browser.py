"""The operator's whole job in a real browser (headless Chromium through selenium).

Commands fail in a running Worker and land in the troubleshooting queue; the "fix" is
deployed; the operator opens the console, filters the queue, selects all, retries with a
reason, confirms the count, and sees the commands complete and the audit name them.
Script-bearing command data and error messages must never run.

Skipped, saying so, where Chromium or its driver is missing (``apt-get install -y
chromium chromium-driver``; .ci/run does). With ``COMMANDBUS_SCREENSHOTS=DIR`` it also
saves PNG screenshots of the main pages there (bench/screenshots.py).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from psycopg_pool import AsyncConnectionPool

from commandbus import (
    Command,
    CommandBus,
    CommandStatus,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
    SendRequest,
    TroubleshootingQueue,
    list_paused,
)
from commandbus_web import BasicAuth, create_app, hash_password
from core.helpers import make_worker, running, wait_until
from web.helpers import XSS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
T = TypeVar("T")

OPERATOR, PASSWORD = "night-shift", "correct horse battery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1440,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console_url(database_url: str, schema: str, pool: AsyncConnectionPool) -> Iterator[str]:
    """The console served by uvicorn on a free port, in a thread (its own event loop)."""
    app = create_app(
        database_url,
        schema=schema,
        auth=BasicAuth(OPERATOR, hash_password(PASSWORD, iterations=1000)),
        refresh_seconds=2,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)  # polling a flag with a deadline
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


async def _in_thread(fn: Callable[[], T]) -> T:
    """Selenium blocks: run it off the loop, where the worker keeps running."""
    return await asyncio.to_thread(fn)


async def _wait_page(
    driver: Any, check: Callable[[], bool], what: str, timeout: float = 20
) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def safe() -> bool:
        try:
            return check()
        except (NoSuchElementException, StaleElementReferenceException):
            return False  # the page is being loaded or swapped: look again

    async def probe() -> bool:
        return await _in_thread(safe)

    await wait_until(probe, timeout=timeout, interval=0.2, what=what)


def _shoot(driver: Any, name: str) -> None:
    folder = os.environ.get("COMMANDBUS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


async def test_operator_fixes_the_queue_in_a_browser(
    browser: Any, console_url: str, pool: AsyncConnectionPool, schema: str, bus: CommandBus
) -> None:
    from selenium.webdriver.common.by import By

    fixed = False

    async def charge(command: Command, ctx: HandlerContext) -> dict[str, Any]:
        if not fixed:
            raise PermanentCommandError("DECLINED", f"gateway refused {XSS}")
        return {"charged": command.data["n"]}

    async def refund(command: Command, ctx: HandlerContext) -> None:
        raise PermanentCommandError("NO_ACCOUNT", "no such account")

    registry = HandlerRegistry()
    registry.register("orders", "Charge", charge)
    registry.register("orders", "Refund", refund)
    charges = [uuid.uuid4() for _ in range(5)]
    refunds = [uuid.uuid4() for _ in range(2)]
    tsq = TroubleshootingQueue(pool, schema=schema)
    async with running(make_worker(pool, schema, registry)):
        data: dict[str, Any] = {"note": XSS}
        sends = [
            SendRequest("orders", "Charge", i, {**data, "n": n}) for n, i in enumerate(charges)
        ]
        sends += [SendRequest("orders", "Refund", i, {"n": n}) for n, i in enumerate(refunds)]
        await bus.send_batch(sends)

        async def all_parked() -> bool:
            return await tsq.count_troubleshooting("orders") == 7

        await wait_until(all_parked, what="7 commands in the troubleshooting queue")
        fixed = True  # the fix is deployed; now the operator retries

        driver = browser
        auth = base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()

        def open_console() -> None:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd(
                "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {auth}"}}
            )
            driver.get(f"{console_url}/tsq")

        await _in_thread(open_console)
        assert await _in_thread(lambda: driver.find_element(By.ID, "operator").text) == OPERATOR
        assert await _in_thread(lambda: driver.execute_script("return window.__xss")) is None
        _shoot(driver, "troubleshooting")

        def filter_queue() -> None:
            driver.find_element(By.NAME, "type").send_keys("Charge")
            driver.find_element(By.NAME, "error_code").send_keys("DECLINED")
            driver.find_element(By.ID, "apply-filter").click()

        await _in_thread(filter_queue)
        await _wait_page(
            driver,
            lambda: "5 matching" in driver.find_element(By.ID, "matching").text,
            "the filtered queue",
        )
        rows = await _in_thread(lambda: driver.find_elements(By.CSS_SELECTOR, "input.pick"))
        assert len(rows) == 5

        def select_all_and_retry() -> None:
            driver.find_element(By.ID, "select-all").click()
            boxes = driver.find_elements(By.CSS_SELECTOR, "input.pick")
            assert all(box.is_selected() for box in boxes)
            driver.find_element(By.ID, "retry").click()

        await _in_thread(select_all_and_retry)
        await _wait_page(
            driver,
            lambda: driver.find_element(By.ID, "confirm-count").get_attribute("data-count") == "5",
            "the confirmation with the dry run's count",
        )
        _shoot(driver, "confirm")

        def confirm() -> None:
            driver.find_element(By.ID, "reason").send_keys("gateway fixed in release 42")
            driver.find_element(By.ID, "confirm").click()

        await _in_thread(confirm)
        await _wait_page(
            driver,
            lambda: driver.find_element(By.ID, "applied").get_attribute("data-count") == "5",
            "the result page",
        )

        async def all_completed() -> bool:
            found = [await bus.get_command("orders", i) for i in charges]
            return all(m is not None and m.status == CommandStatus.COMPLETED for m in found)

        await wait_until(all_completed, timeout=20, what="the retried commands to complete")

        # The command page shows it completed, and the audit names the operator and reason.
        await _in_thread(lambda: driver.get(f"{console_url}/commands/orders/{charges[0]}"))
        assert await _in_thread(lambda: driver.find_element(By.ID, "status").text) == "COMPLETED"
        operators = await _in_thread(
            lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#audit .operator")]
        )
        assert operators == [OPERATOR]
        reasons = await _in_thread(
            lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#audit .reason")]
        )
        assert reasons == ["gateway fixed in release 42"]
        data = await _in_thread(lambda: driver.find_element(By.ID, "data").text)
        assert "<script>window.__xss = 1</script>" in data  # shown as text...
        assert await _in_thread(lambda: driver.execute_script("return window.__xss")) is None
        _shoot(driver, "command")

        # The refunds were not selected by the filter: still parked.
        for command_id in refunds:
            meta = await bus.get_command("orders", command_id)
            assert meta is not None and meta.status == CommandStatus.IN_TROUBLESHOOTING_QUEUE

        # The overview's live part refreshes through htmx (polling the server).
        await _in_thread(lambda: driver.get(f"{console_url}/"))
        read_at = "return document.querySelector('#live .muted').textContent"
        first = await _in_thread(lambda: driver.execute_script(read_at))
        await _wait_page(
            driver,
            lambda: driver.execute_script(read_at) != first,
            "the overview to refresh itself",
            timeout=15,
        )
        total = "return document.getElementById('tsq-total').textContent"
        assert await _in_thread(lambda: driver.execute_script(total)) == "2"
        _shoot(driver, "overview")

        # Pause the domain from the overview, with a reason; the overview says so.
        def pause() -> None:
            driver.find_element(By.CSS_SELECTOR, 'tr[data-domain="orders"] a.pause-link').click()
            driver.find_element(By.ID, "reason").send_keys("gateway maintenance")
            driver.find_element(By.ID, "confirm").click()

        await _in_thread(pause)
        row = 'tr[data-domain="orders"]'
        await _wait_page(
            driver,
            lambda: "PAUSED" in driver.find_element(By.CSS_SELECTOR, row).text,
            "the overview to show the pause",
        )
        text = await _in_thread(lambda: driver.find_element(By.CSS_SELECTOR, row).text)
        assert f"by {OPERATOR}" in text and "gateway maintenance" in text
        paused = await list_paused(pool, schema=schema)
        assert [(p.domain, p.operator) for p in paused] == [("orders", OPERATOR)]

        def resume() -> None:
            driver.find_element(By.CSS_SELECTOR, f"{row} a.resume-link").click()
            driver.find_element(By.ID, "reason").send_keys("done")
            driver.find_element(By.ID, "confirm").click()

        await _in_thread(resume)
        await _wait_page(
            driver,
            lambda: "running" in driver.find_element(By.CSS_SELECTOR, row).text,
            "the overview to show the domain running again",
        )
        assert await list_paused(pool, schema=schema) == []
        for page, name in (("/commands", "commands"), ("/workers", "workers")):
            await _in_thread(lambda page=page: driver.get(f"{console_url}{page}"))
            _shoot(driver, name)
        assert await _in_thread(lambda: driver.execute_script("return window.__xss")) is None
        # htmx and the console's script work under the CSP: the browser reported no violation.
        logs = await _in_thread(lambda: driver.get_log("browser"))
        violations = [e["message"] for e in logs if "Content Security Policy" in e["message"]]
        assert violations == []
