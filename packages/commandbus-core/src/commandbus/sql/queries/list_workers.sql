-- list_workers: the registry, by domain (or reply queue), kind and start time. A row is
-- stale when its heartbeat is older than three of its own heartbeat intervals (a process
-- killed hard, hung, or cut off from the database). Ages are by the database's clock.
SELECT id, kind, host, pid, domain, concurrency, version, in_flight, heartbeat_interval,
       started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age,
       heartbeat_at < now() - make_interval(secs => %(stale_after)s * heartbeat_interval)
           AS stale
FROM {schema}.workers
WHERE (%(domain)s::text IS NULL OR domain = %(domain)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY domain, kind, started_at, id
