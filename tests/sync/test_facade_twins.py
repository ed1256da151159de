"""The facades stay in step with the core: every public async method has a blocking twin
with the same parameters, and each twin delegates (arguments, result, exception) unchanged."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from psycopg_pool import AsyncConnectionPool

import commandbus_sync
from commandbus import (
    BaseProcessManager,
    CommandBus,
    ProcessReplyRouter,
    ProcessRepository,
    TroubleshootingQueue,
    Worker,
)
from commandbus_sync import (
    SyncCommandBus,
    SyncProcessManager,
    SyncProcessReplyRouter,
    SyncProcessRepository,
    SyncRuntime,
    SyncTroubleshootingQueue,
    SyncWorker,
)

T = TypeVar("T")

#: (async class, its blocking twin): same public async methods, same parameters.
PAIRS: list[tuple[type, type]] = [
    (CommandBus, SyncCommandBus),
    (TroubleshootingQueue, SyncTroubleshootingQueue),
    (ProcessRepository, SyncProcessRepository),
]


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
    assert public_async_methods(async_cls), f"{async_cls.__name__} has no async methods?"
    missing = [n for n in public_async_methods(async_cls) if not hasattr(sync_cls, n)]
    assert not missing, f"{sync_cls.__name__} lacks blocking twins of {missing}"
    for name in public_async_methods(async_cls):
        twin = getattr(sync_cls, name)
        assert not inspect.iscoroutinefunction(twin), f"{sync_cls.__name__}.{name} is async"
        assert comparable(twin) == comparable(getattr(async_cls, name)), name


KW = inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    ("service_cls", "sync_cls", "run_params"),
    [
        (
            Worker,
            SyncWorker,
            [("block", KW, True), ("concurrency", KW, None), ("thread_pool_size", KW, None)],
        ),
        (
            ProcessReplyRouter,
            SyncProcessReplyRouter,
            [("block", KW, True), ("concurrency", KW, None)],
        ),
    ],
    ids=["SyncWorker", "SyncProcessReplyRouter"],
)
def test_services_run_and_stop_from_blocking_code(
    service_cls: type[Any], sync_cls: type[Any], run_params: list[tuple[str, Any, Any]]
) -> None:
    """``run`` has its own contract (block=, per-run overrides); ``stop`` is the core's."""
    for name in ("run", "stop"):
        method = getattr(sync_cls, name)
        assert not inspect.iscoroutinefunction(method), f"{sync_cls.__name__}.{name} is async"
    assert comparable(sync_cls.run)[1:] == run_params
    assert comparable(sync_cls.stop) == comparable(service_cls.stop)
    assert isinstance(inspect.getattr_static(sync_cls, "running"), property)


def test_sync_process_manager_start_has_the_cores_parameters() -> None:
    assert not inspect.iscoroutinefunction(SyncProcessManager.start)
    assert comparable(SyncProcessManager.start) == comparable(BaseProcessManager.start)
    assert [name for name, _, _ in comparable(SyncProcessManager.start)] == [
        "self",
        "data",
        "conn",
    ]


def test_the_package_exports_the_sync_names() -> None:
    for name in commandbus_sync.__all__:
        assert hasattr(commandbus_sync, name), name


class Recorder:
    """Stands for an async object's methods: records each call, returns or raises what it
    is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.raise_: BaseException | None = None


def make_fake(cls: type[T], pool: AsyncConnectionPool) -> tuple[T, Recorder]:
    """``cls(pool)`` with every public async method replaced by a recorder."""
    recorder = Recorder()

    def make(method: str) -> Callable[..., Any]:
        async def fake(self: Any, *args: Any, **kwargs: Any) -> Any:
            recorder.calls.append((method, args, kwargs))
            if recorder.raise_ is not None:
                raise recorder.raise_
            return ("result of", method)

        return fake

    overrides = {name: make(name) for name in public_async_methods(cls)}
    fake_cls = type(f"Fake{cls.__name__}", (cls,), overrides)
    return fake_cls(pool), recorder


@pytest.fixture
def fake_pool(runtime: SyncRuntime, database_url: str) -> AsyncConnectionPool:
    """A pool on the runtime for the fakes (never used: every method is faked)."""
    return runtime.open_pool(database_url, min_size=1, max_size=1)


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


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=lambda c: c.__name__)
def test_each_twin_delegates_arguments_result_and_exception(
    runtime: SyncRuntime, fake_pool: AsyncConnectionPool, async_cls: type, sync_cls: type
) -> None:
    target: Any
    target, recorder = make_fake(async_cls, fake_pool)
    sync = sync_cls(target, runtime=runtime)
    for name in public_async_methods(async_cls):
        args, kwargs = sample_arguments(getattr(async_cls, name))
        recorder.calls.clear()
        recorder.raise_ = None
        expected = None if name in RETURN_NOTHING else ("result of", name)
        assert getattr(sync, name)(*args, **kwargs) == expected, name
        assert len(recorder.calls) == 1, name
        called, got_args, got_kwargs = recorder.calls[0]
        assert called == name
        assert list(got_args) == args, name
        assert {k: v for k, v in got_kwargs.items() if v is not None} == kwargs, name
        recorder.raise_ = error = LookupError(name)
        with pytest.raises(LookupError) as caught:
            getattr(sync, name)(*args, **kwargs)
        assert caught.value is error, name


def test_the_wrapped_async_object_is_the_one_given(
    runtime: SyncRuntime, fake_pool: AsyncConnectionPool
) -> None:
    tsq, _ = make_fake(TroubleshootingQueue, fake_pool)
    repo, _ = make_fake(ProcessRepository, fake_pool)
    assert SyncTroubleshootingQueue(tsq, runtime=runtime).queue is tsq
    assert SyncProcessRepository(repo, runtime=runtime).repository is repo


def test_an_async_callable_object_passed_as_callback_is_awaited(runtime: SyncRuntime) -> None:
    """An object with ``async def __call__`` is not a coroutine function, yet async."""
    from commandbus_sync._facade import as_async_callback

    seen: list[object] = []

    class Notify:
        async def __call__(self, info: object) -> str:
            seen.append(info)
            return "done"

    callback = as_async_callback(Notify())
    assert callback is not None
    assert runtime.run(callback, "batch") == "done"
    assert seen == ["batch"]
