"""What every facade shares: blocking twins of async methods, and how a facade gets its
async target (a built instance, a pool on the runtime's loop, or a conninfo).

``get_command = blocking(CommandBus.get_command)``:

The twin has the async method's signature (for type checkers and ``inspect``), runs it on
``self.runtime`` and returns its result or raises its exception unchanged. It looks the
method up on ``self._target`` at call time, so subclasses and fakes are honoured.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Concatenate, ParamSpec, Self, TypeVar, cast

import anyio.to_thread
from psycopg_pool import AsyncConnectionPool

from commandbus import ValidationError
from commandbus_sync.runtime import SyncRuntime, get_default_runtime

__all__ = ["Facade", "SchemaFacade", "as_async_callback", "blocking"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Facade:
    """Base of the sync facades: ``runtime``, the async ``_target``, and the pool opened
    from a ``conninfo`` (owned, so :meth:`close` closes it)."""

    runtime: SyncRuntime
    _owned_pool: AsyncConnectionPool | None = None

    def _bind(
        self,
        target_type: type[T],
        instance: T | None,
        *,
        name: str,
        pool: AsyncConnectionPool | None,
        conninfo: str | None,
        pool_kwargs: dict[str, Any] | None,
        build: Callable[..., T],
        settings: dict[str, Any],
    ) -> T:
        """The async object to delegate to: ``instance`` as given (its settings are its
        own, so passing any of ``settings`` too is an error rather than silently ignored),
        else ``build(pool, **settings)`` on ``pool`` or on a pool opened from ``conninfo``.
        ``settings`` left at None take the async constructor's defaults."""
        label = target_type.__name__
        sources = [
            source
            for source, value in ((name, instance), ("pool", pool), ("conninfo", conninfo))
            if value is not None
        ]
        if len(sources) != 1:
            raise ValidationError(
                name, f"pass exactly one of a {label}, pool= or conninfo= (got {sources})"
            )
        if pool_kwargs is not None and conninfo is None:
            raise ValidationError("pool_kwargs", "only applies with conninfo=")
        given = {name: value for name, value in settings.items() if value is not None}
        if instance is not None:
            if not isinstance(instance, target_type):
                raise ValidationError(name, f"must be a {label}, got {type(instance).__name__}")
            if given:
                raise ValidationError(
                    next(iter(given)), f"is taken from the given {label}; omit it"
                )
            self.runtime.check_pool(getattr(instance, "pool", None))
            return instance
        if pool is not None:
            return build(self.runtime.check_pool(pool), **given)
        assert conninfo is not None
        opened = self.runtime.open_pool(conninfo, **dict(pool_kwargs or {}))
        try:
            target = build(opened, **given)
        except BaseException:
            self.runtime.run(opened.close)
            raise
        self._owned_pool = opened
        return target

    def close(self) -> None:
        """Release what this facade holds; closes the pool it opened from ``conninfo``.
        A no-op once the runtime is shut down (which closed that pool)."""
        if not self.runtime.closed:
            self.runtime.run(self._aclose)

    async def _aclose(self) -> None:
        pool, self._owned_pool = self._owned_pool, None
        if pool is not None:
            await pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SchemaFacade(Facade):
    """A facade over an async class built as ``cls(pool, *, schema=...)`` (the
    troubleshooting queue, the process repository): ``Facade(instance, runtime=rt)``,
    ``Facade(pool=pool, runtime=rt, schema=...)`` or ``Facade(conninfo=...)``."""

    #: The async class wrapped, and the name of the instance argument in errors.
    target_type: ClassVar[type[Any]]
    instance_name: ClassVar[str]

    def __init__(
        self,
        instance: Any = None,
        /,
        *,
        pool: AsyncConnectionPool | None = None,
        conninfo: str | None = None,
        runtime: SyncRuntime | None = None,
        schema: str | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else get_default_runtime()
        self._target = self._bind(
            self.target_type,
            instance,
            name=self.instance_name,
            pool=pool,
            conninfo=conninfo,
            pool_kwargs=None if pool_kwargs is None else dict(pool_kwargs),
            build=self.target_type,
            settings={"schema": schema},
        )


def blocking(
    async_method: Callable[Concatenate[Any, P], Awaitable[R]],
) -> Callable[Concatenate[Any, P], R]:
    name = async_method.__name__

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, self.runtime.run(getattr(self._target, name), *args, **kwargs))

    functools.update_wrapper(method, async_method)
    method.__doc__ = f"Blocking twin of ``{async_method.__qualname__}``.\n\n" + (
        async_method.__doc__ or ""
    )
    return method


def as_async_callback(
    callback: Callable[[Any], Awaitable[object] | object] | None,
) -> Callable[[Any], Awaitable[object]] | None:
    """Sync apps pass plain ``def`` callbacks; the core awaits its callbacks on the loop.
    A plain function runs in a worker thread so it can block without stalling the loop."""
    if callback is None or inspect.iscoroutinefunction(callback):
        return callback
    if not callable(callback):
        raise ValidationError("on_complete", f"must be callable, got {type(callback).__name__}")
    sync_callback = callback

    async def in_thread(arg: Any) -> object:
        result = await anyio.to_thread.run_sync(sync_callback, arg)
        if inspect.isawaitable(result):  # an async callable not declared with `async def`
            return await result
        return result

    return in_thread
