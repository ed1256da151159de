"""``manage.py commandbus``: commandbus's command line on Django's database and the
backend's schema; ``manage.py migrate`` made the tables; the system check."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from commandbus_django._compat import task_backends
from commandbus_django.apps import check_databases
from commandbus_django.management.commands.commandbus import worker_argv
from dj.shop import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_tasks")]


def test_operator_verbs_use_djangos_database(capsys: pytest.CaptureFixture[str]) -> None:
    tasks.explode.enqueue("for the operator")
    from commandbus_django.testing import run_tasks

    run_tasks()
    call_command("commandbus", "tsq", "list", "--json")
    parked = json.loads(capsys.readouterr().out)
    assert [item["command_type"] for item in parked] == ["dj.shop.tasks.explode"]

    call_command("commandbus", "commands", "list", "--domain", "default", "--json")
    assert len(json.loads(capsys.readouterr().out)) == 1

    call_command("commandbus", "migrate")  # idempotent: migrate made the tables already
    capsys.readouterr()


def test_a_failing_verb_is_a_command_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("commandbus", "tsq", "show", "default", "not-a-uuid")
    assert caught.value.returncode == 2
    assert "commandbus: error" in capsys.readouterr().err


def test_the_worker_serves_the_backends_queues_with_its_settings() -> None:
    backend = task_backends["default"]
    argv, queues = worker_argv(backend, [])
    assert queues == ["default", "emails"]
    assert argv[:6] == [
        "worker",
        "commandbus_django.worker:registry",
        "--domain",
        "default",
        "--domain",
        "emails",
    ]
    assert argv[argv.index("--backoff") + 1] == "0"
    assert argv[argv.index("--schedules") + 1] == "commandbus_django.worker:schedules"
    argv, queues = worker_argv(backend, ["--queue", "emails=3", "--processes", "2"])
    assert queues == ["emails"]
    assert argv[-4:] == ["--domain", "emails=3", "--processes", "2"]


def test_workers_declare_each_tasks_timeout_and_limit() -> None:
    from commandbus_django.worker import build_registry

    registry = build_registry()
    assert registry.domains() == {"default", "emails"}
    assert registry.max_running("default") == {"dj.shop.tasks.limited": 2}
    assert registry.timeout("emails", "dj.shop.tasks.slow") == 0.5
    assert registry.get("default", "dj.shop.tasks.add") is not None
    assert registry.get("default", "dj.shop.tasks.no_such_task") is None


def test_periodic_tasks_become_schedules() -> None:
    from commandbus_django.worker import build_schedules

    (schedule,) = build_schedules()
    assert schedule.name == "shop-nightly"
    assert schedule.command_type == "dj.shop.tasks.nightly"
    assert schedule.domain == "default"


def test_a_database_that_is_not_postgresql_fails_the_system_check() -> None:
    lite = {"BACKEND": "commandbus_django.CommandBusBackend", "OPTIONS": {"DATABASE": "lite"}}
    with override_settings(TASKS={"default": lite}):
        (error,) = check_databases()
    assert error.id == "commandbus.E001"
    assert "sqlite" in error.msg and "PostgreSQL" in error.msg
    assert check_databases() == []  # the suite's own backend: PostgreSQL on psycopg 3


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"MAX_ATEMPTS": 3}, "unknown keys ['MAX_ATEMPTS']"),
        ({"MAX_ATTEMPTS": 0}, "whole number >= 1"),
        ({"BACKOFF": "10,60"}, "BACKOFF must be a non-empty list"),
        ({"TIMEOUT": -1}, "more than 0 seconds"),
        ({"SCHEDULES": [{"task": "x.y"}]}, "'cron' or 'every'"),
    ],
)
def test_bad_options_are_refused_with_what_is_wrong(options: dict[str, object], says: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from commandbus_django._options import BackendOptions

    with pytest.raises(ImproperlyConfigured) as caught:
        BackendOptions.parse("default", options)
    assert says in str(caught.value) and "TASKS['default']['OPTIONS']" in str(caught.value)
