-- register_worker: a worker or router (re-)enters the registry; returns its started_at
-- (the first registration's, when passed back in). Rows whose heartbeat stopped more than
-- forget_after seconds ago (processes killed hard long ago) are removed on the way.
WITH forgotten AS (
    DELETE FROM {schema}.workers
    WHERE heartbeat_at < now() - make_interval(secs => %(forget_after)s)
      AND id <> %(id)s
)
INSERT INTO {schema}.workers AS w (
    id, kind, host, pid, domain, concurrency, version, heartbeat_interval, in_flight,
    started_at, heartbeat_at
)
VALUES (
    %(id)s, %(kind)s, %(host)s, %(pid)s, %(domain)s, %(concurrency)s, %(version)s,
    %(heartbeat_interval)s, %(in_flight)s, coalesce(%(started_at)s::timestamptz, now()), now()
)
ON CONFLICT (id) DO UPDATE
SET kind = excluded.kind, host = excluded.host, pid = excluded.pid,
    domain = excluded.domain, concurrency = excluded.concurrency,
    version = excluded.version, heartbeat_interval = excluded.heartbeat_interval,
    in_flight = excluded.in_flight, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at
RETURNING w.started_at
