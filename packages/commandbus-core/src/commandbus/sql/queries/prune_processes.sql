-- prune_processes: delete up to `limit` processes that ended (COMPLETED, COMPENSATED,
-- FAILED, CANCELED) before `cutoff`, with their process audit. Their commands are then
-- ordinary finished commands, deleted by prune_commands.sql. Parked replies stay: they
-- are the operators' to resolve.
WITH p AS (
    SELECT process_id
    FROM {schema}.processes
    WHERE completed_at IS NOT NULL AND completed_at < %(cutoff)s
      AND status IN ('COMPLETED', 'COMPENSATED', 'FAILED', 'CANCELED')
    ORDER BY completed_at
    LIMIT %(limit)s
), aud AS (
    DELETE FROM {schema}.process_audit a
    USING p
    WHERE a.process_id = p.process_id
), del AS (
    DELETE FROM {schema}.processes x
    USING p
    WHERE x.process_id = p.process_id
    RETURNING x.process_id
)
SELECT count(*) FROM del
