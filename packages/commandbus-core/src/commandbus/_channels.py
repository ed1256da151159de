"""LISTEN/NOTIFY channel names: one per (schema, queue), always under 64 bytes."""

from __future__ import annotations

import hashlib

__all__ = ["command_channel", "reply_channel"]


def _channel(kind: str, schema: str, name: str) -> str:
    channel = f"{schema}.{kind}.{name}"
    if len(channel.encode()) <= 63:
        return channel
    digest = hashlib.sha1(name.encode()).hexdigest()[:20]
    return f"{schema[:30]}.{kind}.{digest}"


def command_channel(schema: str, domain: str) -> str:
    return _channel("q", schema, domain)


def reply_channel(schema: str, queue: str) -> str:
    return _channel("r", schema, queue)
