"""The facades stay in step with the core: every public async method has a blocking twin
with the same parameters, and each twin delegates (arguments, result, exception) unchanged."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

import commandbus_sync
from commandbus import CommandBus
from commandbus_sync import SyncCommandBus, SyncRuntime

# (async class, its blocking twin); the other facades join as the core parts land.
PAIRS: list[tuple[type, type]] = [(CommandBus, SyncCommandBus)]


#: Twins that return None whatever the async method returns (it returns None too).
RETURN_NOTHING = {"close", "watch_batch"}


def public_async_methods(cls: type) -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    )


def comparable(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Parameter names, kinds and defaults (annotations differ for ``conn``)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=lambda c: c.__name__)
def test_every_public_async_method_has_a_blocking_twin(async_cls: type, sync_cls: type) -> None:
    missing = [n for n in public_async_methods(async_cls) if not hasattr(sync_cls, n)]
    assert not missing, f"{sync_cls.__name__} lacks blocking twins of {missing}"
    for name in public_async_methods(async_cls):
        twin = getattr(sync_cls, name)
        assert not inspect.iscoroutinefunction(twin), f"{sync_cls.__name__}.{name} is async"
        assert comparable(twin) == comparable(getattr(async_cls, name)), name


def test_the_package_exports_the_sync_names() -> None:
    for name in commandbus_sync.__all__:
        assert hasattr(commandbus_sync, name), name


class Recorder:
    """Stands for a CommandBus method: records the call, returns or raises what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.raise_: BaseException | None = None


@pytest.fixture
def fake_bus(runtime: SyncRuntime, database_url: str) -> Iterator[tuple[CommandBus, Recorder]]:
    """A CommandBus whose public async methods are replaced by recorders."""
    recorder = Recorder()
    overrides: dict[str, Any] = {}
    for name in public_async_methods(CommandBus):

        def make(method: str) -> Callable[..., Any]:
            async def fake(self: Any, *args: Any, **kwargs: Any) -> Any:
                recorder.calls.append((method, args, kwargs))
                if recorder.raise_ is not None:
                    raise recorder.raise_
                return ("result of", method)

            return fake

        overrides[name] = make(name)
    pool: AsyncConnectionPool = runtime.open_pool(database_url, min_size=1, max_size=1)
    fake_cls = type("FakeCommandBus", (CommandBus,), overrides)
    yield fake_cls(pool), recorder


def sample_arguments(fn: Callable[..., Any]) -> tuple[list[Any], dict[str, Any]]:
    """A distinct sentinel for every parameter but ``self`` and ``conn`` (the outbox switch)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.name == "conn":
            continue
        value: Any = object()
        if p.name == "on_complete":  # an async callback passes through as is

            async def value(info: Any) -> None:
                return None

        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return args, kwargs


def test_each_bus_twin_delegates_arguments_result_and_exception(
    runtime: SyncRuntime, fake_bus: tuple[CommandBus, Recorder]
) -> None:
    bus, recorder = fake_bus
    sync = SyncCommandBus(bus, runtime=runtime)
    for name in public_async_methods(CommandBus):
        args, kwargs = sample_arguments(getattr(CommandBus, name))
        recorder.calls.clear()
        recorder.raise_ = None
        expected = None if name in RETURN_NOTHING else ("result of", name)
        assert getattr(sync, name)(*args, **kwargs) == expected
        assert len(recorder.calls) == 1
        called, got_args, got_kwargs = recorder.calls[0]
        assert called == name
        assert list(got_args) == args
        assert {k: v for k, v in got_kwargs.items() if v is not None} == kwargs
        recorder.raise_ = error = LookupError(name)
        with pytest.raises(LookupError) as caught:
            getattr(sync, name)(*args, **kwargs)
        assert caught.value is error
