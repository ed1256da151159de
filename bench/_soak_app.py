"""The soak's handlers (run by ``commandbus worker _soak_app:registry``) and its saga.

Every successful handler writes one ledger row in the worker's transaction (``ctx.conn``),
so a row exists exactly when the command's completion committed: the soak's end check
finds a command lost (no row) or completed twice (two rows). A command whose data says
``transient`` fails its first attempt; ``permanent`` always fails permanently (it ends
in the troubleshooting queue, with no ledger row).
"""

from __future__ import annotations

import os
import time
from typing import Any

from commandbus import (
    BaseProcessManager,
    Command,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
    ProcessCommand,
    Reply,
    TransientCommandError,
)

DOMAIN = "soak"
REPLY_QUEUE = "soak-replies"
LEDGER = "soak_ledger"

LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER} (
    id          bigserial PRIMARY KEY,
    command_id  uuid      NOT NULL,
    attempt     integer   NOT NULL,
    sent_at     float8    NOT NULL,
    started_at  float8    NOT NULL,
    pid         integer   NOT NULL
)
"""

registry = HandlerRegistry()


async def _work(command: Command, ctx: HandlerContext) -> dict[str, Any]:
    started = time.time()
    conn = ctx.conn  # taken from the pool at its first statement (the INSERT below)
    data = command.data
    if data.get("permanent"):
        raise PermanentCommandError("SOAK_PERMANENT", "this command always fails")
    if data.get("transient") and ctx.attempt == 1:
        raise TransientCommandError("SOAK_TRANSIENT", "fails its first attempt")
    await conn.execute(
        f"INSERT INTO {LEDGER} (command_id, attempt, sent_at, started_at, pid) "
        "VALUES (%s, %s, %s, %s, %s)",
        (command.command_id, ctx.attempt, data["t"], started, os.getpid()),
    )
    return {"ok": True}


for _type in ("Single", "Batched", "StepA", "StepB"):
    registry.register(DOMAIN, _type, _work)


class SoakSaga(BaseProcessManager[dict[str, Any], str]):
    """Two steps, A then B, each a command in the soak domain."""

    process_type = "soak_saga"
    domain = DOMAIN
    reply_queue = REPLY_QUEUE

    def create_initial_state(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"n": data["n"], "done": []}

    def get_first_step(self, state: dict[str, Any]) -> str:
        return "A"

    def build_command(self, step: str, state: dict[str, Any]) -> ProcessCommand:
        return ProcessCommand(f"Step{step}", {"n": state["n"], "t": time.time()})

    def update_state(self, state: dict[str, Any], step: str, reply: Reply) -> dict[str, Any]:
        state["done"].append(step)
        return state

    def get_next_step(self, step: str, reply: Reply, state: dict[str, Any]) -> str | None:
        return "B" if step == "A" else None

    def get_compensation_step(self, step: str) -> str | None:
        return None
