"""Django for the tests of commandbus-django: settings made here (pytest-django reads
them), pointed at the session's server once it is known, a test database of Django's
own (pytest-django creates it with ``migrate``, which creates commandbus's tables)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django
import psycopg
import pytest
from django.apps import apps
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests",
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="dj.shop.urls",
        DATABASES={
            "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "placeholder"},
            # Never used by a test: the system check must refuse it for tasks.
            "lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        },
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "commandbus_django",
            "dj.shop",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        TASKS={
            "default": {
                "BACKEND": "commandbus_django.CommandBusBackend",
                "QUEUES": ["default", "emails"],
                "OPTIONS": {"MAX_ATTEMPTS": 2, "BACKOFF": [0]},
            },
            "immediate": {
                "BACKEND": (
                    "django.tasks.backends.immediate.ImmediateBackend"
                    if __import__("django").VERSION >= (6,)
                    else "django_tasks.backends.immediate.ImmediateBackend"
                ),
                "QUEUES": ["default", "emails"],
            },
        },
    )


if not apps.ready:  # pytest-django sets Django up only if it was configured before this file
    django.setup()  # was imported (as when tests/dj is the path given), not during collection


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    commandbus_server_url: str, request: pytest.FixtureRequest
) -> None:
    """Point Django at the session's server before pytest-django makes its database:
    one test database per xdist worker (``test_<db>_gw0``), as pytest-django names them."""
    info = psycopg.conninfo.conninfo_to_dict(commandbus_server_url)
    name = str(info.get("dbname", "postgres"))
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    database = settings.DATABASES["default"]
    database.update(
        NAME=name,
        USER=info.get("user", ""),
        PASSWORD=info.get("password", ""),
        HOST=info.get("host", ""),
        PORT=str(info.get("port", "")),
    )
    # (the TEST dict Django filled in: keep its other keys)
    database.setdefault("TEST", {})["NAME"] = f"test_{name}_{worker}" if worker else f"test_{name}"


@pytest.fixture
def clean_tasks(django_db_blocker: Any) -> Iterator[None]:
    """An empty queue for this test: commandbus's tables live outside Django's, so a
    TransactionTestCase's flush does not empty them."""
    from commandbus_django._connection import conninfo

    def truncate() -> None:
        with (
            django_db_blocker.unblock(),
            psycopg.connect(conninfo("default"), autocommit=True) as conn,
        ):
            conn.execute("TRUNCATE commandbus.commands, commandbus.audit")

    truncate()
    yield
