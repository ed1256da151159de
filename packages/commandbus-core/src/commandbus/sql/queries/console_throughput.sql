-- console_throughput: commands finished per minute and domain over the last %(minutes)s
-- minutes: COMPLETED, and failed (FAILED, or parked in the troubleshooting queue).
-- Each part reads an index by time: commands_finished_idx (finished, outside batches),
-- commands_parked_keyset_idx (parked). The bound is written out in each part, not in a
-- CTE, so that the planner estimates it from now() (a CTE's value is unknown when
-- planning: it guessed a third of the table and paid for JIT compilation).
-- Batch members are read by the created_at index:
-- only those sent within %(sent_window)s seconds count (the Prometheus metrics count
-- every outcome).
SELECT domain, minute, sum(completed)::int AS completed, sum(failed)::int AS failed
FROM (
    SELECT c.domain, date_trunc('minute', c.updated_at) AS minute,
           count(*) FILTER (WHERE c.status = 'COMPLETED') AS completed,
           count(*) FILTER (WHERE c.status = 'FAILED') AS failed
    FROM {schema}.commands c
    WHERE c.status IN ('COMPLETED', 'FAILED', 'CANCELED') AND c.batch_id IS NULL
      AND c.updated_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)
    GROUP BY 1, 2
    UNION ALL
    SELECT c.domain, date_trunc('minute', c.updated_at), 0, count(*)
    FROM {schema}.commands c
    WHERE c.status = 'IN_TROUBLESHOOTING_QUEUE'
      AND c.updated_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)
    GROUP BY 1, 2
    UNION ALL
    SELECT c.domain, date_trunc('minute', c.updated_at),
           count(*) FILTER (WHERE c.status = 'COMPLETED'),
           count(*) FILTER (WHERE c.status = 'FAILED')
    FROM {schema}.commands c
    WHERE c.batch_id IS NOT NULL AND c.status IN ('COMPLETED', 'FAILED')
      AND c.created_at > now() - make_interval(secs => %(sent_window)s)
      AND c.updated_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)
    GROUP BY 1, 2
) parts
GROUP BY 1, 2
ORDER BY 1, 2
