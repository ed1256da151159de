"""Process-wide settings of the sync companion: the default runtime and handler threads.

The thread pool runs plain-``def`` handlers of :class:`SyncWorker`. Its size comes from
:func:`configure`, else ``COMMAND_BUS_SYNC_THREADS``, else ``min(32, CPU count + 4)`` (as
``concurrent.futures.ThreadPoolExecutor`` sizes itself).
"""

from __future__ import annotations

import os

from commandbus import ValidationError
from commandbus._validation import MAX_CONCURRENCY, check_concurrency
from commandbus_sync.runtime import SyncRuntime, set_default_runtime

__all__ = [
    "ENV_THREADS",
    "configure",
    "configured_thread_pool_size",
    "default_thread_pool_size",
]

ENV_THREADS = "COMMAND_BUS_SYNC_THREADS"

_thread_pool_size: int | None = None


def configure(*, runtime: SyncRuntime | None = None, thread_pool_size: int | None = None) -> None:
    """Set the default runtime and/or handler thread-pool size; ``None`` leaves a setting as is.

    Both are validated before either is applied. Objects built earlier keep the runtime
    they were built with.
    """
    global _thread_pool_size
    size = (
        None
        if thread_pool_size is None
        else check_concurrency("thread_pool_size", thread_pool_size)
    )
    if runtime is not None:
        if not isinstance(runtime, SyncRuntime):
            raise ValidationError("runtime", f"must be a SyncRuntime, got {type(runtime).__name__}")
        set_default_runtime(runtime)
    if size is not None:
        _thread_pool_size = size


def default_thread_pool_size() -> int:
    """Configured size, else ``COMMAND_BUS_SYNC_THREADS`` (validated), else CPU count + 4
    capped at 32."""
    configured = configured_thread_pool_size()
    return configured if configured is not None else min(32, (os.cpu_count() or 1) + 4)


def configured_thread_pool_size() -> int | None:
    """The size set by :func:`configure`, else by ``COMMAND_BUS_SYNC_THREADS``; None if
    neither (a worker then sizes its pool from the CPU count and its concurrency)."""
    if _thread_pool_size is not None:
        return _thread_pool_size
    raw = os.environ.get(ENV_THREADS)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValidationError(
            ENV_THREADS, f"must be an integer from 1 to {MAX_CONCURRENCY:,}, got {raw!r}"
        ) from None
    return check_concurrency(ENV_THREADS, value)
