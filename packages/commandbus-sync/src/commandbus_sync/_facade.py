"""Blocking twins of async methods, one line each.

``get_command = blocking(CommandBus.get_command)``:

The twin has the async method's signature (for type checkers and ``inspect``), runs it on
``self.runtime`` and returns its result or raises its exception unchanged. It looks the
method up on ``self._target`` at call time, so subclasses and fakes are honoured.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import anyio.to_thread

from commandbus import ValidationError

__all__ = ["as_async_callback", "blocking"]

P = ParamSpec("P")
R = TypeVar("R")


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
        return await anyio.to_thread.run_sync(sync_callback, arg)

    return in_thread
