"""Milliseconds per console page on a big schema (issue #27: 10,000,000 commands,
1,000,000 parked; every page's p95 under 300 ms, and 50 concurrent requests to the
heaviest page leave the others under 1 s).

    python bench/bench_console.py [-n 10000000] [--parked 1000000] [--runs 20]
                                  [--schema NAME] [--concurrency 50]

Fills a schema with SQL (generate_series, the commands table's secondary indexes dropped
for the fill and rebuilt after, as ``pg_indexes`` lists them): commands in 5 domains sent
over the last 30 days, most COMPLETED, some FAILED, PENDING and IN_PROGRESS, ``--parked``
in the troubleshooting queue under three error codes, batches of 100 commands, processes
whose commands carry their id, parked replies and worker rows. ``--schema NAME`` keeps
the filled schema for the next run (a 10M fill takes a while); without it a fresh schema
is dropped at the end. Then:

1. renders every page ``--runs`` times in-process (httpx over ASGI, the requests a
   browser makes), with the console's brief cache off, so each run reads the database,
   and prints p50, p95 and worst per page;
2. sends ``--concurrency`` requests at once to the heaviest page (all alike, then each
   with its own filter, so nothing is shared) while another client keeps reading the
   other pages, and prints how long those took.

Point DATABASE_URL at a server to use it; otherwise a throwaway one is started.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))

from psycopg_pool import AsyncConnectionPool

from _common import server_url
from commandbus import migrate
from commandbus_web import TrustedHeaderAuth, create_app
from commandbus_web.load import Load

FILL = """
INSERT INTO {schema}.commands (
    domain, command_id, command_type, status, attempts, max_attempts, data, correlation_id,
    batch_id, result, last_error_type, last_error_code, last_error_message,
    last_error_traceback, created_at, updated_at, vt, priority)
SELECT 'domain' || (g %% 5),
       md5('c' || g)::uuid,
       'Type' || (g / 7 %% 8),
       s.status,
       CASE WHEN s.status IN ('PENDING') THEN 0 ELSE 1 END,
       3,
       jsonb_build_object('order', g, 'amount', g %% 977, 'note', repeat('x', 40)),
       CASE WHEN g %% 10 = 0 THEN md5('p' || (g / 10 %% 2000))::uuid END,
       CASE WHEN g <= %(batched)s THEN md5('b' || (g / 100))::uuid END,
       CASE WHEN s.status = 'COMPLETED' THEN jsonb_build_object('ok', true) END,
       CASE WHEN s.status IN ('FAILED', 'IN_TROUBLESHOOTING_QUEUE')
            THEN 'PermanentCommandError' END,
       CASE WHEN s.status IN ('FAILED', 'IN_TROUBLESHOOTING_QUEUE')
            THEN (ARRAY['DECLINED', 'TIMEOUT', 'NO_ADDRESS'])[1 + g / %(park_every)s %% 3] END,
       CASE WHEN s.status IN ('FAILED', 'IN_TROUBLESHOOTING_QUEUE')
            THEN 'the payment gateway refused order ' || g END,
       CASE WHEN s.status = 'IN_TROUBLESHOOTING_QUEUE'
            THEN 'Traceback (most recent call last):' || repeat(E'\\n  File "x.py"', 8) END,
       now() - g * make_interval(secs => %(spacing)s),
       now() - g * make_interval(secs => %(spacing)s) + interval '1 second',
       CASE WHEN s.status IN ('PENDING', 'IN_PROGRESS')
            THEN now() - g * make_interval(secs => %(spacing)s) END,
       g %% 3
FROM generate_series(1, %(n)s) AS g
CROSS JOIN LATERAL (SELECT CASE
    WHEN g %% %(park_every)s = 0 THEN 'IN_TROUBLESHOOTING_QUEUE'
    WHEN g %% 50 = 1 THEN 'PENDING'
    WHEN g %% 2000 = 3 THEN 'IN_PROGRESS'
    WHEN g %% 100 = 7 THEN 'FAILED'
    ELSE 'COMPLETED' END AS status) s
"""

EXTRAS = [
    """
INSERT INTO {schema}.batches (batch_id, domain, name, total, created_at)
SELECT DISTINCT ON (batch_id) batch_id, domain, 'import ' || batch_id, 100, min(created_at)
    OVER (PARTITION BY batch_id)
FROM {schema}.commands WHERE batch_id IS NOT NULL
""",
    """
UPDATE {schema}.batches b SET total = n.total
FROM (SELECT batch_id, count(*)::int AS total FROM {schema}.commands
      WHERE batch_id IS NOT NULL GROUP BY 1) n
WHERE n.batch_id = b.batch_id
""",
    """
INSERT INTO {schema}.processes (process_id, domain, process_type, status, current_step,
    state, completed_steps, created_at, updated_at, completed_at)
SELECT md5('p' || g)::uuid, 'domain' || (g % 5), 'Checkout',
       CASE WHEN g % 4 = 0 THEN 'COMPENSATED' ELSE 'COMPLETED' END, 'ship',
       jsonb_build_object('order', g), '["reserve", "charge"]'::jsonb,
       now() - g * interval '10 minutes', now() - g * interval '10 minutes',
       now() - g * interval '10 minutes'
FROM generate_series(0, 1999) AS g
""",
    """
INSERT INTO {schema}.process_audit (process_id, entry_type, step, command_domain,
    command_id, command_type, command_data, sent_at, reply_outcome, received_at)
SELECT md5('p' || g)::uuid, e.kind, e.step, 'domain0', md5('c' || g)::uuid, 'Type1', '{{}}',
       now() - g * interval '10 minutes', 'SUCCESS', now() - g * interval '10 minutes'
FROM generate_series(0, 1999) AS g
CROSS JOIN (VALUES ('STEP', 'reserve'), ('STEP', 'charge'), ('COMPENSATION', 'release'))
    AS e(kind, step)
""",
    """
INSERT INTO {schema}.parked_replies (queue, domain, command_id, command_type, outcome,
    read_ct, reason_code, reason)
SELECT 'checkout-replies', 'domain0', md5('r' || g)::uuid, 'Type1', 'SUCCESS', 1,
       'UNKNOWN_PROCESS', 'no process ' || g
FROM generate_series(1, 100) AS g
""",
    """
INSERT INTO {schema}.workers (id, kind, host, pid, domain, concurrency, version,
    heartbeat_interval)
SELECT 'host:' || g || ':abc', 'worker', 'host', g, 'domain' || (g % 5), 10, '0.1.0', 5
FROM generate_series(1, 10) AS g
""",
]


async def fill(url: str, schema: str, n: int, parked: int) -> None:
    spacing = 30 * 86400 / n
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        # Building the secondary indexes once after the fill is several times faster than
        # maintaining them row by row; their definitions come from the migrated schema.
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'commands' AND indexname NOT LIKE '%%pkey'",
            [schema],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
        conn.execute(
            sql.SQL(FILL).format(schema=sql.Identifier(schema)),
            {
                "n": n,
                "park_every": max(1, n // parked),
                "batched": min(n, 20_000),
                "spacing": spacing,
            },
        )
        filled = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            conn.execute(definition.encode())
        indexed = time.perf_counter()
        for statement in EXTRAS:
            conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, "commands")))
        for table in ("batches", "processes", "process_audit", "parked_replies", "workers"):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))
        counts = conn.execute(
            sql.SQL("SELECT status, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(
                sql.Identifier(schema, "commands")
            )
        ).fetchall()
    print(
        f"filled in {time.perf_counter() - started:.0f} s (rows {filled - started:.0f} s, "
        f"{len(indexes)} indexes {indexed - filled:.0f} s): "
        + ", ".join(f"{status} {count:,}" for status, count in counts),
        flush=True,
    )


@asynccontextmanager
async def bench_schema(
    url: str, name: str | None, n: int, parked: int
) -> AsyncIterator[tuple[AsyncConnectionPool, str]]:
    """A filled schema and a pool of 4 (the console's own default); a named schema is kept
    (and reused when it already holds commands), a fresh one dropped at the end."""
    schema = name or f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'commands'", [schema]
        ).fetchone()
    async with AsyncConnectionPool(url, min_size=4, max_size=4, open=False) as pool:
        try:
            if exists:
                print(f"reusing schema {schema}", flush=True)
            else:
                await migrate(pool, schema=schema)
                await fill(url, schema, n, parked)
            yield pool, schema
        finally:
            if name is None:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def measure(url: str, args: argparse.Namespace) -> None:
    async with bench_schema(url, args.schema, args.n, args.parked) as (pool, schema):
        with psycopg.connect(url, autocommit=True) as conn:
            s = sql.Identifier(schema)
            command = conn.execute(
                sql.SQL(
                    "SELECT domain, command_id, correlation_id FROM {}.commands "
                    "WHERE correlation_id IS NOT NULL AND status = 'IN_TROUBLESHOOTING_QUEUE' "
                    "LIMIT 1"
                ).format(s)
            ).fetchone()
            batch = conn.execute(
                sql.SQL("SELECT domain, batch_id FROM {}.batches LIMIT 1").format(s)
            ).fetchone()
            process = conn.execute(
                sql.SQL("SELECT process_id FROM {}.processes LIMIT 1").format(s)
            ).fetchone()
        assert command and batch and process
        domain, command_id, correlation_id = command
        # A search no index serves is bounded by a time range (sent after/before).
        since = datetime.now(UTC) - timedelta(days=1)
        day = "after_time=" + since.strftime("%Y-%m-%dT%H:%M")
        auth = TrustedHeaderAuth("X-User", trusted_proxies={"127.0.0.1"})
        app = create_app(pool, schema=schema, auth=auth)
        console = app.state.console
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"X-User": "bench"}, timeout=60
        ) as client:
            tsq = await client.get("/tsq")
            next_tsq = re.search(r'href="([^"]+)" id="next"', tsq.text)
            commands = await client.get("/commands")
            next_commands = re.search(r'href="([^"]+)" id="next"', commands.text)
            token = re.search(r'name="csrf_token" value="([^"]+)"', tsq.text)
            assert next_tsq and next_commands and token, tsq.text[-2000:]
            confirm_form = {
                "csrf_token": token.group(1),
                "error_code": "DECLINED",
                "all": "1",
                "action": "retry",
            }
            pages: list[tuple[str, str, dict[str, str] | None]] = [
                ("overview", "/", None),
                ("overview (htmx refresh)", "/overview/live", None),
                ("troubleshooting queue", "/tsq", None),
                ("tsq, by error code", "/tsq?error_code=DECLINED", None),
                ("tsq, by domain and type", "/tsq?domain=domain0&type=Type1", None),
                ("tsq, parked since 2000", "/tsq?since=" + "2000-01-01T00:00", None),
                ("tsq, page 2 (cursor)", next_tsq.group(1).replace("&amp;", "&"), None),
                ("tsq confirm (count, all DECLINED)", "/tsq/confirm", confirm_form),
                ("commands (newest)", "/commands", None),
                ("commands, page 2 (cursor)", next_commands.group(1).replace("&amp;", "&"), None),
                ("commands, by id", f"/commands?id={command_id}", None),
                ("commands, by correlation id", f"/commands?correlation_id={correlation_id}", None),
                ("commands, domain + FAILED", "/commands?domain=domain2&status=FAILED", None),
                ("commands, in a day, no match", "/commands?type=Nope&" + day, None),
                ("commands, by type", "/commands?type=Type3", None),
                ("commands, parked", "/commands?status=IN_TROUBLESHOOTING_QUEUE", None),
                ("command page", f"/commands/{domain}/{command_id}", None),
                ("batches", "/batches", None),
                ("batch page", f"/batches/{batch[0]}/{batch[1]}", None),
                ("processes", "/processes", None),
                ("process page", f"/processes/{process[0]}", None),
                ("workers", "/workers", None),
                ("parked replies", "/replies", None),
            ]

            async def fetch(path: str, form: dict[str, str] | None) -> httpx.Response:
                if form is None:
                    return await client.get(path)
                return await client.post(path, data=form)

            # 1. Every page, each run reading the database (the brief cache off).
            console.load = Load(ttl=0)
            print(f"\n{'page':40} {'p50 ms':>8} {'p95 ms':>8} {'worst ms':>9}", flush=True)
            slowest = ("", 0.0)
            for name, path, form in pages:
                times = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    response = await fetch(path, form)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (name, response.text[-500:])
                p50, p95 = statistics.median(times), _p95(times)
                slowest = max(slowest, (name, p95), key=lambda x: x[1])
                print(f"{name:40} {p50:8.1f} {p95:8.1f} {max(times):9.1f}", flush=True)
            verdict = "under" if slowest[1] < 300 else "OVER"
            print(f"\nslowest p95: {slowest[0]} {slowest[1]:.1f} ms ({verdict} 300 ms)")

            # A filter that matches nothing among the parked commands: cut short, told why.
            started = time.perf_counter()
            rare = await client.get("/tsq?error_code=NO_SUCH_CODE")
            print(
                f"tsq, an error code nobody has: {rare.status_code} in "
                f"{(time.perf_counter() - started) * 1000:.0f} ms "
                f"({('narrow the search' in rare.text and 'asks to narrow') or 'answered'})"
            )

            # 2. Many requests at once to the heaviest page, others reading meanwhile.
            console.load = Load()
            heaviest = "/tsq"
            others = [
                (n, p, f)
                for n, p, f in pages
                if not p.startswith("/tsq") and p not in ("/", "/overview/live")
            ]
            for label, paths in (
                (f"{args.concurrency} x {heaviest} (alike)", [heaviest] * args.concurrency),
                (
                    f"{args.concurrency} x /tsq, each its own filter",
                    [
                        f"/tsq?since=2000-01-{1 + i % 28:02d}T{i % 24:02d}:00"
                        for i in range(args.concurrency)
                    ],
                ),
            ):
                await _crowd(label, paths, others, fetch)


async def _crowd(
    label: str,
    paths: list[str],
    others: list[tuple[str, str, dict[str, str] | None]],
    fetch: object,
) -> None:
    """``paths`` all at once; meanwhile one client reads ``others`` in turn."""
    heavy: list[tuple[int, float]] = []
    light: list[tuple[str, float]] = []
    done = asyncio.Event()

    async def one(path: str) -> None:
        started = time.perf_counter()
        response = await fetch(path, None)  # type: ignore[operator]
        heavy.append((response.status_code, (time.perf_counter() - started) * 1000))

    async def reader() -> None:
        while not done.is_set():
            for name, path, form in others:
                if form is not None:
                    continue
                started = time.perf_counter()
                response = await fetch(path, None)  # type: ignore[operator]
                assert response.status_code == 200, (name, response.status_code)
                light.append((name, (time.perf_counter() - started) * 1000))

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(one(p) for p in paths))
    done.set()
    await reading
    codes: dict[int, int] = {}
    for code, _ in heavy:
        codes[code] = codes.get(code, 0) + 1
    worst_name, worst = max(light, key=lambda x: x[1])
    print(
        f"\n{label}: answered {', '.join(f'{c}: {k}' for c, k in sorted(codes.items()))}; "
        f"p95 {_p95([t for _, t in heavy]):.0f} ms, worst {max(t for _, t in heavy):.0f} ms"
    )
    print(
        f"  other pages meanwhile ({len(light)} requests): p95 "
        f"{_p95([t for _, t in light]):.0f} ms, worst {worst:.0f} ms ({worst_name})"
        f" ({'under' if worst < 1000 else 'OVER'} 1 s)"
    )


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-n", type=int, default=10_000_000, help="commands (default 10,000,000)")
    parser.add_argument(
        "--parked", type=int, default=1_000_000, help="in the troubleshooting queue"
    )
    parser.add_argument("--runs", type=int, default=20, help="renders per page (default 20)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests at once (default 50)")
    parser.add_argument("--schema", help="keep the filled schema under this name (reused if there)")
    args = parser.parse_args()
    with server_url() as url:
        asyncio.run(measure(url, args))


if __name__ == "__main__":
    main()
