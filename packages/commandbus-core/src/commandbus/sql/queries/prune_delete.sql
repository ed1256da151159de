-- prune_delete: the tail of prune_commands.sql and prune_batches.sql, inserted as their
-- `deleted` fragment: delete the finished commands listed in their `old` CTE (checking the
-- status again) with their audit rows and unread replies; `del` returns what went.
del AS (
    DELETE FROM {schema}.commands c
    USING old
    WHERE c.command_id = old.command_id AND c.domain = old.domain
      AND c.status IN ('COMPLETED', 'FAILED', 'CANCELED')
    RETURNING c.domain, c.command_id
), aud AS (
    DELETE FROM {schema}.audit a
    USING del
    WHERE a.command_id = del.command_id AND a.domain = del.domain
), rep AS (
    DELETE FROM {schema}.replies r
    USING del
    WHERE r.command_id = del.command_id AND r.domain = del.domain
)
