"""commandbus_sync: blocking facades over the async commandbus core (work in progress)."""

__all__: list[str] = []
