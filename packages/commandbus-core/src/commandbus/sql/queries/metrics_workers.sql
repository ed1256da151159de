-- metrics_workers: the worker registry by kind and domain (a router's reply queue), live
-- and stale rows; stale as in list_workers.sql: the heartbeat is older than three of the
-- row's own intervals (a process killed hard, hung, or cut off from the database).
SELECT kind, domain,
       count(*) FILTER (WHERE NOT stale) AS live,
       count(*) FILTER (WHERE stale) AS stale
FROM (
    SELECT kind, domain,
           heartbeat_at < now() - make_interval(secs => %(stale_after)s * heartbeat_interval)
               AS stale
    FROM {schema}.workers
) w
GROUP BY kind, domain
ORDER BY kind, domain
