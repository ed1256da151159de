"""Pausing a domain: during an incident, stop every worker of a domain from starting its
commands, then resume.

The pause is a row in ``paused_domains``: every worker process checks it in each dequeue,
so all obey within their poll interval (a second by default), whatever host they run on.
Commands already running finish; sending goes on (commands wait, PENDING). Resuming
deletes the row and wakes the domain's workers at once (NOTIFY). Both are logged at INFO
(logger ``commandbus.domains``) with the operator and the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from commandbus import _store
from commandbus._channels import command_channel
from commandbus._db import autocommit_connection
from commandbus._validation import check_name, check_schema, check_text

__all__ = ["PausedDomain", "list_paused", "pause_domain", "resume_domain"]

log = logging.getLogger("commandbus.domains")


@dataclass(frozen=True, slots=True)
class PausedDomain:
    domain: str
    operator: str | None
    reason: str | None
    paused_at: datetime


async def pause_domain(
    pool: AsyncConnectionPool,
    domain: str,
    *,
    operator: str | None = None,
    reason: str | None = None,
    schema: str = "commandbus",
) -> PausedDomain:
    """Stop the domain's workers from starting commands until :func:`resume_domain`."""
    name = check_name("domain", domain)
    operator = check_text("operator", operator, optional=True)
    reason = check_text("reason", reason, optional=True)
    async with autocommit_connection(pool) as conn:
        row = await _store.pause_domain(conn, check_schema(schema), name, operator, reason)
    paused = PausedDomain(**row)
    log.info(
        "domain %s paused by %s: %s",
        paused.domain,
        paused.operator or "an unnamed operator",
        paused.reason or "no reason given",
        extra={"domain": paused.domain, "operator": paused.operator, "reason": paused.reason},
    )
    return paused


async def resume_domain(
    pool: AsyncConnectionPool,
    domain: str,
    *,
    operator: str | None = None,
    schema: str = "commandbus",
) -> bool:
    """Let the domain's workers start commands again (woken at once); False if the domain
    was not paused."""
    schema = check_schema(schema)
    domain = check_name("domain", domain)
    operator = check_text("operator", operator, optional=True)
    async with autocommit_connection(pool) as conn:
        resumed = await _store.resume_domain(conn, schema, domain, command_channel(schema, domain))
    if resumed:
        log.info(
            "domain %s resumed by %s",
            domain,
            operator or "an unnamed operator",
            extra={"domain": domain, "operator": operator},
        )
    return resumed


async def list_paused(
    pool: AsyncConnectionPool, *, schema: str = "commandbus"
) -> list[PausedDomain]:
    """The paused domains, by name."""
    async with autocommit_connection(pool) as conn:
        rows = await _store.list_paused(conn, check_schema(schema))
    return [PausedDomain(**row) for row in rows]
