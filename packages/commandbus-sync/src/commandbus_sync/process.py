"""SyncProcessReplyRouter: blocking twin of commandbus's ProcessReplyRouter.

A placeholder until the core part lands.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SyncProcessReplyRouter"]


class SyncProcessReplyRouter:
    """Not implemented yet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("coming in the next commit")
