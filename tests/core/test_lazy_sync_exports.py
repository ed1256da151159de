"""The lazy re-export seam between commandbus and commandbus_sync."""

from __future__ import annotations

import subprocess
import sys

import commandbus
import commandbus_sync

SYNC_NAMES = [
    "SyncRuntime",
    "SyncCommandBus",
    "SyncWorker",
    "SyncTroubleshootingQueue",
    "SyncProcessReplyRouter",
    "configure",
]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_importing_commandbus_loads_neither_sync_nor_anyio_nor_threads() -> None:
    out = _python(
        "import threading, sys, commandbus\n"
        "assert 'commandbus_sync' not in sys.modules, 'commandbus_sync imported'\n"
        "assert 'anyio' not in sys.modules, 'anyio imported'\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
    )
    assert out.returncode == 0, out.stderr


def test_sync_names_are_listed() -> None:
    for name in SYNC_NAMES:
        assert name in commandbus.__all__
        assert name in dir(commandbus)


def test_sync_names_resolve_to_commandbus_sync_when_installed() -> None:
    import commandbus_sync

    for name in SYNC_NAMES:
        assert getattr(commandbus, name) is getattr(commandbus_sync, name)
    from commandbus import SyncRuntime

    assert SyncRuntime is commandbus_sync.SyncRuntime


def test_import_commandbus_sync_module_works() -> None:
    out = _python(
        "import commandbus.sync as s, commandbus_sync\n"
        "assert s.SyncCommandBus is commandbus_sync.SyncCommandBus"
    )
    assert out.returncode == 0, out.stderr


_HIDE_SYNC = (
    "import sys\n"
    "class Hide:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'commandbus_sync' or name.startswith('commandbus_sync.'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Hide())\n"
)


def test_missing_sync_distribution_says_how_to_install() -> None:
    out = _python(
        _HIDE_SYNC + "import commandbus\n"
        "try:\n"
        "    from commandbus import SyncCommandBus\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
        "try:\n"
        "    import commandbus.sync\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no ImportError for commandbus.sync')\n"
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all('pip install "commandbus[sync]"' in line for line in lines)


def test_star_import_works_without_the_sync_distribution() -> None:
    out = _python(_HIDE_SYNC + "from commandbus import *\nprint(CommandBus.__name__)\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "CommandBus"


def test_the_sync_error_types_are_re_exported() -> None:
    from commandbus import AsyncContextError, RuntimeClosedError

    assert RuntimeClosedError is commandbus_sync.RuntimeClosedError
    assert AsyncContextError is commandbus_sync.AsyncContextError


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        commandbus.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
