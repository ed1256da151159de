"""Who may do what: users with a role, the actions of the console, and the rule between.

Two roles: a *viewer* reads every page; an *operator* also acts (retry, cancel, complete,
pause and resume a domain, cancel a running command, retry or discard a parked reply).
For finer rules give ``create_app(authorize=...)`` a callable ``authorize(user, action)``
returning True or False (plain or ``async``); it is asked for every page (``Action.VIEW``)
and every action, and replaces :func:`default_authorize`, which it may call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Action", "Authorize", "Role", "User", "default_authorize"]


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


class Action(StrEnum):
    """What a user asks to do; a ``str``, so ``action == "retry"`` works."""

    #: Read any page.
    VIEW = "view"
    #: Troubleshooting queue: retry, cancel or complete parked commands (one or in bulk).
    RETRY = "retry"
    CANCEL = "cancel"
    COMPLETE = "complete"
    #: Cancel a pending or running command from its page or the command list.
    CANCEL_COMMAND = "cancel_command"
    PAUSE_DOMAIN = "pause_domain"
    RESUME_DOMAIN = "resume_domain"
    RETRY_REPLY = "retry_reply"
    DISCARD_REPLY = "discard_reply"


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in user. ``name`` goes into the audit trail of whatever they do."""

    name: str
    role: Role = Role.OPERATOR


#: ``authorize(user, action) -> bool``, plain or async.
Authorize = Callable[[User, Action], "bool | Awaitable[bool]"]


def default_authorize(user: User, action: Action) -> bool:
    """Viewers may view; operators may do everything."""
    return action == Action.VIEW or user.role == Role.OPERATOR
