-- get_audit_trail: every state change of one command, in the order it happened.
-- Stored events (audit rows) and events derived from the command row, merged by id (one
-- sequence numbers all of them; see 0004_one_row_per_command.sql):
--   SENT                  the row's msg_id and created_at;
--   RECEIVED              of a lease that ended in a stored event: that row's lease;
--   RECEIVED              of the current (or last, successful) lease: the row's lease;
--   COMPLETED             a success: the row's lease, id lease_id + 1.
WITH cmd AS (
    SELECT domain, command_id, msg_id, created_at, status, lease_id, leased_at, worker,
           attempts, updated_at
    FROM {schema}.commands
    WHERE command_id = %(command_id)s AND (%(domain)s::text IS NULL OR domain = %(domain)s)
), stored AS (
    SELECT audit_id, domain, command_id, event_type, details, created_at, lease_id,
           leased_at, worker
    FROM {schema}.audit
    WHERE command_id = %(command_id)s AND (%(domain)s::text IS NULL OR domain = %(domain)s)
)
SELECT audit_id, domain, command_id, event_type, details, created_at
FROM (
    SELECT audit_id, domain, command_id, event_type, details, created_at FROM stored
    UNION ALL
    SELECT s.lease_id, s.domain, s.command_id, 'RECEIVED',
           jsonb_build_object('msg_id', c.msg_id, 'attempt', s.details -> 'attempt',
                              'worker', s.worker),
           s.leased_at
    FROM stored s JOIN cmd c USING (domain, command_id)
    WHERE s.lease_id IS NOT NULL
    UNION ALL
    SELECT msg_id, domain, command_id, 'SENT', jsonb_build_object('msg_id', msg_id),
           created_at
    FROM cmd
    UNION ALL
    SELECT lease_id, domain, command_id, 'RECEIVED',
           jsonb_build_object('msg_id', msg_id, 'attempt', attempts, 'worker', worker),
           leased_at
    FROM cmd
    WHERE lease_id IS NOT NULL
    UNION ALL
    SELECT lease_id + 1, domain, command_id, 'COMPLETED',
           jsonb_build_object('attempt', attempts), updated_at
    FROM cmd
    WHERE lease_id IS NOT NULL AND status = 'COMPLETED'
) events
ORDER BY audit_id
