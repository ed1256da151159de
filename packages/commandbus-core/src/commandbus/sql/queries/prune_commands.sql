-- prune_commands: delete up to `limit` finished commands (not in a batch) that finished
-- before `cutoff`, with their audit rows and unread replies. A command of a process stays
-- as long as its process does (prune_processes.sql deletes the process first).
-- Finished rows never change again; the status is checked again on delete all the same.
WITH old AS (
    SELECT c.domain, c.command_id
    FROM {schema}.commands c
    WHERE c.status IN ('COMPLETED', 'FAILED', 'CANCELED') AND c.batch_id IS NULL
      AND c.updated_at < %(cutoff)s
      AND (c.correlation_id IS NULL
           OR NOT EXISTS (SELECT 1 FROM {schema}.processes p
                          WHERE p.process_id = c.correlation_id))
    ORDER BY c.updated_at
    LIMIT %(limit)s
), {deleted}
SELECT count(*) FROM del
