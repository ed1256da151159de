-- prune_batches: delete the commands of finished batches (nothing pending, in progress
-- or in the troubleshooting queue) created and last changed before `cutoff`, up to
-- `limit` commands, with their audit rows and unread replies; a batch row goes in the
-- statement that deletes its last commands. A batch larger than `limit` is deleted over
-- several statements: in between, its counters count fewer commands (its status stays).
WITH b AS (
    SELECT b.batch_id
    FROM {schema}.batches b
    WHERE b.created_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM {schema}.commands c
                      WHERE c.batch_id = b.batch_id
                        AND c.status IN ('PENDING', 'IN_PROGRESS', 'IN_TROUBLESHOOTING_QUEUE'))
      AND NOT EXISTS (SELECT 1 FROM {schema}.commands c
                      WHERE c.batch_id = b.batch_id AND c.updated_at >= %(cutoff)s)
    ORDER BY b.created_at
    LIMIT %(limit)s
), old AS (
    SELECT c.domain, c.command_id, c.batch_id
    FROM b JOIN {schema}.commands c ON c.batch_id = b.batch_id
    LIMIT %(limit)s
), {deleted}, gone AS (
    -- Batches none of whose commands is left outside this statement's deletions.
    DELETE FROM {schema}.batches x
    USING b
    WHERE x.batch_id = b.batch_id
      AND NOT EXISTS (SELECT 1 FROM {schema}.commands c
                      WHERE c.batch_id = b.batch_id
                        AND NOT EXISTS (SELECT 1 FROM old
                                        WHERE old.command_id = c.command_id
                                          AND old.domain = c.domain))
    RETURNING x.batch_id
)
SELECT (SELECT count(*) FROM del) AS commands, (SELECT count(*) FROM gone) AS batches
