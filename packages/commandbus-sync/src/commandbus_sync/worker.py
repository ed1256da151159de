"""SyncWorker: blocking twin of commandbus's Worker.

A placeholder until the core part lands.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SyncWorker"]


class SyncWorker:
    """Not implemented yet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("coming in the next commit")
