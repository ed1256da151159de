"""configure() and COMMAND_BUS_SYNC_THREADS: valid values apply, invalid ones say what is wrong."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from commandbus import CommandBusError, ValidationError
from commandbus_sync import RuntimeClosedError, SyncRuntime, config, configure
from commandbus_sync import runtime as rt_module
from commandbus_sync.config import ENV_THREADS, default_thread_pool_size
from commandbus_sync.runtime import get_default_runtime


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(config, "_thread_pool_size", None)
    monkeypatch.setattr(rt_module, "_default", None)
    monkeypatch.delenv(ENV_THREADS, raising=False)
    yield


def test_default_size_follows_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_thread_pool_size() == 6
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert default_thread_pool_size() == 32
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert default_thread_pool_size() == 5


def test_env_var_sets_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_THREADS, " 12 ")
    assert default_thread_pool_size() == 12


@pytest.mark.parametrize("raw", ["0", "-3", "eight", "2.5", "", "10001", "9" * 400])
def test_invalid_env_var_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(ENV_THREADS, raw)
    with pytest.raises(ValidationError, match="must be an integer from 1 to 10,000") as caught:
        default_thread_pool_size()
    assert caught.value.field == ENV_THREADS
    assert isinstance(caught.value, CommandBusError)


def test_configure_wins_over_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_THREADS, "12")
    configure(thread_pool_size=3)
    assert default_thread_pool_size() == 3


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "4"])
def test_configure_rejects_a_bad_size(bad: object) -> None:
    with pytest.raises(ValidationError, match="thread_pool_size"):
        configure(thread_pool_size=bad)  # type: ignore[arg-type]
    assert config._thread_pool_size is None


def test_configure_sets_the_default_runtime(runtime: SyncRuntime) -> None:
    configure(runtime=runtime)
    assert get_default_runtime() is runtime


def test_configure_validates_everything_before_applying_anything(runtime: SyncRuntime) -> None:
    with pytest.raises(ValidationError):
        configure(runtime=runtime, thread_pool_size=0)
    assert rt_module._default is None


def test_configure_rejects_a_non_runtime_or_a_closed_one() -> None:
    with pytest.raises(ValidationError, match="must be a SyncRuntime"):
        configure(runtime=object())  # type: ignore[arg-type]
    closed = SyncRuntime()
    closed.shutdown()
    with pytest.raises(RuntimeClosedError):
        configure(runtime=closed)
