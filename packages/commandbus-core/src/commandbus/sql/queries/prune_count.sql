-- prune_count: what a prune with this `cutoff` would delete now (`commandbus prune
-- --dry-run`): finished commands outside batches and processes, finished batches (and
-- their commands), finished processes (whose commands follow them).
WITH b AS (
    SELECT b.batch_id
    FROM {schema}.batches b
    WHERE b.created_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM {schema}.commands c
                      WHERE c.batch_id = b.batch_id
                        AND c.status IN ('PENDING', 'IN_PROGRESS', 'IN_TROUBLESHOOTING_QUEUE'))
      AND NOT EXISTS (SELECT 1 FROM {schema}.commands c
                      WHERE c.batch_id = b.batch_id AND c.updated_at >= %(cutoff)s)
), p AS (
    SELECT process_id
    FROM {schema}.processes
    WHERE completed_at IS NOT NULL AND completed_at < %(cutoff)s
      AND status IN ('COMPLETED', 'COMPENSATED', 'FAILED', 'CANCELED')
)
SELECT
    (SELECT count(*)
     FROM {schema}.commands c
     WHERE c.status IN ('COMPLETED', 'FAILED', 'CANCELED') AND c.batch_id IS NULL
       AND c.updated_at < %(cutoff)s
       AND (c.correlation_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM {schema}.processes x
                           WHERE x.process_id = c.correlation_id)
            OR c.correlation_id IN (SELECT process_id FROM p)))
    + (SELECT count(*) FROM b JOIN {schema}.commands c ON c.batch_id = b.batch_id)
        AS commands,
    (SELECT count(*) FROM b) AS batches,
    (SELECT count(*) FROM p) AS processes
