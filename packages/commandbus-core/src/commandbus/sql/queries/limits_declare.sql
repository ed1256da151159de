-- limits_declare: write the limits a worker's registry declares for its domain (the last
-- deploy's figure wins), and say whether the domain has any limit at all.
WITH declared AS (
    INSERT INTO {schema}.concurrency_limits (domain, command_type, max_running)
    SELECT %(domain)s, t.command_type, t.max_running
    FROM unnest(%(command_types)s::text[], %(max_running)s::int[]) AS t(command_type, max_running)
    ORDER BY t.command_type  -- the order limits_lock.sql locks them in
    ON CONFLICT (domain, command_type) DO UPDATE SET max_running = EXCLUDED.max_running
    RETURNING 1
)
SELECT (SELECT count(*) FROM declared) > 0
    OR EXISTS (SELECT 1 FROM {schema}.concurrency_limits WHERE domain = %(domain)s)
