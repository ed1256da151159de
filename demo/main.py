"""commandbus demo: a synchronous shop back office, end to end, in about ten seconds.

    hatch run demo [--commands N] [--dsn URL] [--keep]

Without --dsn (or DATABASE_URL) it starts a throwaway PostgreSQL from the local server
binaries, migrates a schema, and then, all from blocking code through ``commandbus_sync``:

1. a synchronous app sends N payment commands through ``SyncCommandBus``;
2. a ``SyncWorker`` with plain-``def`` handlers processes them: some fail transiently and
   recover on retry, a few fail permanently and land in the troubleshooting queue;
3. an operator retries one parked command and cancels another;
4. a batch of e-mails reports its counters;
5. a three-step order-fulfilment process manager completes;
6. live traffic: commands sent one at a time to the idle worker, to measure latency;
7. a summary table: throughput, statuses, latencies.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psycopg import sql

from commandbus import (
    BaseProcessManager,
    BatchCommand,
    Command,
    HandlerContext,
    HandlerRegistry,
    PermanentCommandError,
    ProcessCommand,
    ProcessStatus,
    Reply,
    RetryPolicy,
    SendRequest,
    TransientCommandError,
    migrate,
)
from commandbus.testing import start_postgres
from commandbus_sync import (
    SyncCommandBus,
    SyncProcessManager,
    SyncProcessReplyRouter,
    SyncProcessRepository,
    SyncRuntime,
    SyncTroubleshootingQueue,
    SyncWorker,
)

PAYMENTS = "payments"
SHOP = "shop"

# -- handlers: plain functions, as in any synchronous code base -----------------------

registry = HandlerRegistry()
fixed_by_operator: set[uuid.UUID] = set()
_flaky_seen: set[uuid.UUID] = set()
_lock = threading.Lock()


@registry.handler(PAYMENTS, "ChargeCard")
def charge_card(command: Command, ctx: HandlerContext) -> dict[str, Any]:
    data = command.data
    if data.get("card") == "expired" and command.command_id not in fixed_by_operator:
        raise PermanentCommandError("CARD_EXPIRED", "the card on file has expired")
    if data.get("flaky"):
        with _lock:
            first_time = command.command_id not in _flaky_seen
            _flaky_seen.add(command.command_id)
        if first_time:
            raise TransientCommandError("GATEWAY_TIMEOUT", "payment gateway timed out")
    return {"charged_cents": data["amount_cents"], "attempt": ctx.attempt}


@registry.handler(SHOP, "SendEmail")
def send_email(command: Command, ctx: HandlerContext) -> dict[str, Any]:
    return {"sent_to": command.data["to"]}


@registry.handler(SHOP, "ReserveStock")
def reserve_stock(command: Command, ctx: HandlerContext) -> dict[str, Any]:
    return {"reservation": f"R-{command.data['order']}"}


@registry.handler(SHOP, "TakePayment")
def take_payment(command: Command, ctx: HandlerContext) -> dict[str, Any]:
    return {"payment": f"P-{command.data['order']}"}


@registry.handler(SHOP, "ShipOrder")
def ship_order(command: Command, ctx: HandlerContext) -> dict[str, Any]:
    return {"tracking": f"T-{command.data['order']}"}


# -- a three-step process manager ------------------------------------------------------


class Step(StrEnum):
    RESERVE = "RESERVE"
    PAY = "PAY"
    SHIP = "SHIP"


@dataclass
class Order:
    order: str
    log: list[str]


class Fulfilment(BaseProcessManager[Order, Step]):
    process_type = "fulfilment"
    domain = SHOP
    reply_queue = "shop.replies"

    def create_initial_state(self, data: dict[str, Any]) -> Order:
        return Order(order=data["order"], log=[])

    def get_first_step(self, state: Order) -> Step:
        return Step.RESERVE

    def build_command(self, step: Step, state: Order) -> ProcessCommand:
        command_type = {Step.RESERVE: "ReserveStock", Step.PAY: "TakePayment"}.get(
            step, "ShipOrder"
        )
        return ProcessCommand(command_type, {"order": state.order})

    def update_state(self, state: Order, step: Step, reply: Reply) -> Order:
        state.log.append(f"{step}:{reply.outcome}")
        return state

    def get_next_step(self, step: Step, reply: Reply, state: Order) -> Step | None:
        return {Step.RESERVE: Step.PAY, Step.PAY: Step.SHIP}.get(step)


# -- the scenario ----------------------------------------------------------------------


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def progress(done: int, total: int, started: float) -> None:
    """A progress bar redrawn in place on a terminal; only the final line otherwise."""
    if done < total and not sys.stdout.isatty():
        return
    width = 30
    filled = width * done // total
    rate = done / max(time.perf_counter() - started, 1e-9)
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total else ""
    print(f"\r  [{bar}] {done:>6}/{total} {rate:>8,.0f}/s", end=end, flush=True)


def wait_until(predicate: Any, timeout: float = 60, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo did not reach the expected state in time")
        time.sleep(every)


def count_by_status(rt: SyncRuntime, pool: Any, schema: str) -> dict[str, int]:
    query = sql.SQL("SELECT status, count(*) FROM {}.commands GROUP BY status").format(
        sql.Identifier(schema)
    )

    async def fetch() -> dict[str, int]:
        async with pool.connection() as conn:
            cur = await conn.execute(query)
            return {status: n for status, n in await cur.fetchall()}

    return rt.run(fetch)


def live_latencies(rt: SyncRuntime, pool: Any, schema: str) -> tuple[float, float]:
    """p50/p99 from send to completion of the live commands (sent to an idle worker)."""
    query = sql.SQL(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM ("
        "  SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms"
        "  FROM {}.commands WHERE status = 'COMPLETED' AND data ? 'live') t"
    ).format(sql.Identifier(schema))

    async def fetch() -> tuple[float, float]:
        async with pool.connection() as conn:
            cur = await conn.execute(query)
            row = await cur.fetchone()
            assert row is not None
            return float(row[0] or 0), float(row[1] or 0)

    return rt.run(fetch)


def run(dsn: str, n: int, schema: str) -> None:
    with SyncRuntime() as rt:
        pool = rt.open_pool(dsn, min_size=4, max_size=24)
        rt.run(migrate, pool, schema=schema)
        bus = SyncCommandBus(pool=pool, runtime=rt, schema=schema)
        tsq = SyncTroubleshootingQueue(pool=pool, runtime=rt, schema=schema)

        say(f"A synchronous app sends {n:,} payment commands through SyncCommandBus")
        expired: list[uuid.UUID] = []
        expired_every = max(1, min(500, n // 4))  # a few cards expired, at least two
        started = time.perf_counter()
        chunk = 100
        for first in range(0, n, chunk):
            requests = []
            for i in range(first, min(n, first + chunk)):
                data: dict[str, Any] = {"amount_cents": 100 + i, "flaky": i % 10 == 3}
                command_id = uuid.uuid4()
                if i % expired_every == expired_every // 2:
                    data["card"] = "expired"
                    expired.append(command_id)
                requests.append(SendRequest(PAYMENTS, "ChargeCard", command_id, data))
            bus.send_batch(requests)
            progress(min(n, first + chunk), n, started)
        send_rate = n / (time.perf_counter() - started)

        say("A SyncWorker with plain-def handlers processes them (1 in 10 fails once)")
        policy = RetryPolicy(max_attempts=3, backoff=(0.2, 0.5))
        payments = SyncWorker(
            pool=pool,
            domain=PAYMENTS,
            registry=registry,
            runtime=rt,
            schema=schema,
            concurrency=16,
            retry_policy=policy,
            thread_pool_size=16,
        )
        shop = SyncWorker(
            pool=pool,
            domain=SHOP,
            registry=registry,
            runtime=rt,
            schema=schema,
            concurrency=4,
            thread_pool_size=4,
        )
        process_started = time.perf_counter()
        payments.run(block=False)
        shop.run(block=False)
        expected = n - len(expired)

        def finished() -> int:
            counts = count_by_status(rt, pool, schema)
            return counts.get("COMPLETED", 0) + counts.get("IN_TROUBLESHOOTING_QUEUE", 0)

        done = 0
        deadline = time.monotonic() + 60 + n / 100  # generous: a stuck demo must not hang
        while done < n:
            done = min(finished(), n)
            progress(done, n, process_started)
            if done < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {done:,} of {n:,} commands finished in time")
                time.sleep(0.2)
        process_rate = n / (time.perf_counter() - process_started)
        completed = count_by_status(rt, pool, schema).get("COMPLETED", 0)
        print(
            f"  completed {completed:,} of {expected:,} expected; "
            f"{tsq.count_troubleshooting(PAYMENTS)} in the troubleshooting queue"
        )

        say("An operator looks at the troubleshooting queue")
        for item in tsq.list_troubleshooting(PAYMENTS, limit=5):
            print(f"  {item.command_id}  {item.last_error_code}: {item.last_error_message}")
        if expired:
            fixed = expired[0]
            fixed_by_operator.add(fixed)
            tsq.operator_retry(PAYMENTS, fixed, operator="demo-operator")
            print(f"  retried {fixed} after updating the card")
            wait_until(lambda: bus.get_command(PAYMENTS, fixed).status == "COMPLETED")
            print(f"  {fixed} is now {bus.get_command(PAYMENTS, fixed).status}")
        if len(expired) > 1:
            tsq.operator_cancel(
                PAYMENTS,
                expired[1],
                reason="customer closed the account",
                operator="demo-operator",
            )
            print(f"  canceled {expired[1]}: {bus.get_command(PAYMENTS, expired[1]).status}")
            trail = [e.event_type for e in bus.get_audit_trail(expired[1], domain=PAYMENTS)]
            print(f"  its audit trail: {' -> '.join(trail)}")

        say("A batch of 200 e-mails reports its counters")
        batch = bus.create_batch(
            SHOP,
            [
                BatchCommand("SendEmail", uuid.uuid4(), {"to": f"c{i}@example.com"})
                for i in range(200)
            ],
            name="receipts",
        )
        wait_until(lambda: bus.get_batch(SHOP, batch.batch_id).status.startswith("COMPLETED"))
        info = bus.get_batch(SHOP, batch.batch_id)
        print(
            f"  batch {info.name!r}: {info.status}, {info.completed}/{info.total} completed, "
            f"{info.failed} failed, {info.in_troubleshooting} in troubleshooting"
        )

        say("A three-step order-fulfilment process runs to completion")
        fulfilment = SyncProcessManager(Fulfilment(bus.bus), runtime=rt)
        router = SyncProcessReplyRouter(
            pool=pool,
            reply_queue=Fulfilment.reply_queue,
            managers=[fulfilment.manager],
            runtime=rt,
            schema=schema,
        )
        router.run(block=False)
        process_id = fulfilment.start({"order": "A-1001"})
        repository = SyncProcessRepository(pool=pool, runtime=rt, schema=schema)
        wait_until(lambda: repository.get(process_id).status == ProcessStatus.COMPLETED)
        process = repository.get(process_id)
        print(f"  process {process_id}: {process.status}, steps {process.state['log']}")

        router.stop(timeout=10)

        say("Live traffic: 200 commands sent one at a time to the idle worker")
        live = [uuid.uuid4() for _ in range(200)]
        for command_id in live:
            bus.send(PAYMENTS, "ChargeCard", command_id, {"amount_cents": 1, "live": True})
        wait_until(lambda: bus.get_command(PAYMENTS, live[-1]).status == "COMPLETED")
        shop.stop(timeout=10)
        payments.stop(timeout=10)
        p50, p99 = live_latencies(rt, pool, schema)
        print(f"  send-to-completion latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")

        counts = count_by_status(rt, pool, schema)
        say("Summary")
        rows = [
            ("send (SyncCommandBus.send_batch)", f"{send_rate:,.0f} commands/s"),
            ("process (SyncWorker, plain def)", f"{process_rate:,.0f} commands/s"),
            ("live send-to-completion p50 / p99", f"{p50:,.1f} ms / {p99:,.1f} ms"),
            *((f"status {status}", f"{count:,}") for status, count in sorted(counts.items())),
        ]
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"  {label:<{width}}  {value:>22}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=3000, help="payment commands to send")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL to use (default: DATABASE_URL, else a throwaway one)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the throwaway database running and print its URL"
    )
    args = parser.parse_args(argv)
    if args.commands < 10:
        parser.error("--commands must be at least 10")
    server = None
    dsn = args.dsn
    # A database of one's own gets a fresh schema per run, so runs never mix.
    schema = f"demo_{uuid.uuid4().hex[:8]}" if dsn else "demo"
    if not dsn:
        print("Starting a throwaway PostgreSQL ...", flush=True)
        server = start_postgres(use_env=False)
        dsn = server.url
    try:
        run(dsn, args.commands, schema)
    finally:
        if server is not None:
            if args.keep:
                print(f"\nThe database keeps running at {server.url} (schema {schema!r}).")
                if server.data_dir:
                    print(f"Its data directory (for pg_ctl stop -D): {server.data_dir}")
            else:
                server.stop()
    print(f"\nDone. Data is in schema {schema!r}." if server is None else "\nDone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
