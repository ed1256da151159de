-- metrics_oldest_finished: seconds since the oldest finished command the pruner may
-- delete finished (prune_commands.sql's rows, walked in the same order through
-- commands_finished_idx: the first row answers); NULL when there is none. Above the
-- retention, the pruner is behind.
SELECT extract(epoch FROM now() - c.updated_at)::float8 AS age
FROM {schema}.commands c
WHERE c.status IN ('COMPLETED', 'FAILED', 'CANCELED') AND c.batch_id IS NULL
  AND (c.correlation_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM {schema}.processes p
                      WHERE p.process_id = c.correlation_id))
ORDER BY c.updated_at
LIMIT 1
