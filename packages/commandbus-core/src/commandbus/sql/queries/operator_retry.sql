-- operator_retry: back to PENDING with a fresh attempt budget, deliverable now.
WITH cmd AS (
    UPDATE {schema}.commands
    SET status = 'PENDING', attempts = 0, forgiven = 0, vt = now(), lease_id = NULL,
        cancel_requested = NULL,
        updated_at = now()
    WHERE domain = %(domain)s AND command_id = %(command_id)s
      AND status = 'IN_TROUBLESHOOTING_QUEUE'
    RETURNING domain, command_id, msg_id
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, 'OPERATOR_RETRY',
           jsonb_build_object('operator', %(operator)s::text, 'reason', %(reason)s::text,
                              'msg_id', msg_id)
    FROM cmd
)
SELECT msg_id, pg_notify(%(channel)s, '') FROM cmd
