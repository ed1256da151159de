"""The operator console inside Django: Django's sign-in decides who reads (staff) and
who acts (``commandbus.operate_console``); actions are audited under the Django user."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from commandbus_django._compat import TaskResultStatus
from commandbus_django._handles import handles_for
from commandbus_django.testing import run_tasks
from dj.shop import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_tasks")]


def signed_in(username: str, *, staff: bool = True, operate: bool = False) -> Client:
    user = User.objects.create_user(username, is_staff=staff)  # no password: no slow hash
    if operate:
        user.user_permissions.add(Permission.objects.get(codename="operate_console"))
    client = Client()
    client.force_login(user)
    return client


def parked_task() -> str:
    result = tasks.explode.enqueue("mailer down")
    run_tasks()
    assert tasks.explode.get_result(result.id).status == TaskResultStatus.FAILED
    return str(result.id)


def csrf(page_text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page_text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def post_form(client: Client, path: str, form: dict[str, str], **extra: str) -> Any:
    """As a browser posts the console's forms (urlencoded)."""
    return client.post(
        path, urlencode(form), content_type="application/x-www-form-urlencoded", **extra
    )


def test_anonymous_visitors_are_sent_to_the_login_page() -> None:
    response = Client().get("/commandbus/tsq")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/commandbus/tsq")


def test_users_who_are_not_staff_are_refused() -> None:
    assert signed_in("customer", staff=False).get("/commandbus/").status_code == 403


def test_staff_read_the_console_under_its_prefix() -> None:
    task_id = parked_task()
    reader = signed_in("reader")
    # The console shares a page's reads for up to 2 s: poll past an earlier test's read.
    deadline = time.monotonic() + 10
    while True:
        page = reader.get("/commandbus/tsq")
        assert page.status_code == 200
        text = page.content.decode()
        if task_id in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "dj.shop.tasks.explode" in text and task_id in text
    assert 'href="/commandbus/commands' in text  # links keep the mount point
    assert page["Content-Security-Policy"].startswith("default-src 'none'")
    static = signed_in("reader2").get("/commandbus/static/htmx.min.js")
    assert static.status_code == 200 and len(static.content) > 1000


def test_staff_without_the_permission_cannot_act() -> None:
    task_id = parked_task()
    client = signed_in("reader")
    token = csrf(client.get("/commandbus/tsq").content.decode())
    form = {"csrf_token": token, "action": "retry", "id": task_id, "limit": "1"}
    refused = post_form(client, "/commandbus/tsq/apply", form)
    assert refused.status_code == 403
    assert tasks.explode.get_result(task_id).status == TaskResultStatus.FAILED


def test_an_operator_retries_a_failed_task_as_their_django_user() -> None:
    task_id = parked_task()
    client = signed_in("ada", operate=True)
    token = csrf(client.get("/commandbus/tsq").content.decode())
    form = {"csrf_token": token, "action": "retry", "id": task_id, "limit": "1"}
    done = post_form(client, "/commandbus/tsq/apply", form, HTTP_ORIGIN="http://testserver")
    assert done.status_code == 200, done.content.decode()[:500]
    assert tasks.explode.get_result(task_id).status == TaskResultStatus.READY
    handles = handles_for("default", "commandbus")
    trail = handles.bus.get_audit_trail(uuid.UUID(task_id))
    (retry,) = [event for event in trail if event.event_type == "OPERATOR_RETRY"]
    assert retry.details["operator"] == "ada"
