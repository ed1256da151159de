-- operator_retry: back to PENDING with a fresh attempt budget, deliverable now.
WITH cmd AS (
    UPDATE {schema}.commands
    SET status = 'PENDING', attempts = 0, updated_at = now()
    WHERE domain = %(domain)s AND command_id = %(command_id)s
      AND status = 'IN_TROUBLESHOOTING_QUEUE'
    RETURNING domain, command_id
), msg AS (
    INSERT INTO {schema}.queue (domain, command_id)
    SELECT domain, command_id FROM cmd
    RETURNING msg_id, domain, command_id
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, 'OPERATOR_RETRY',
           jsonb_build_object('operator', %(operator)s::text, 'msg_id', msg_id)
    FROM msg
)
SELECT msg_id, pg_notify(%(channel)s, '') FROM msg
