-- cancel_command: cancel one command, already locked by lock_command.sql in the same
-- transaction. Not running (PENDING, including delayed and retry-waiting, or parked in
-- the troubleshooting queue): CANCELED now, with its CANCELED reply and an
-- OPERATOR_CANCEL audit event naming the operator and the reason. Running
-- (IN_PROGRESS): a cancel request for its worker (see migration 10). Returns whether it
-- was canceled now and whether a request was left.
WITH canceled AS (
    UPDATE {schema}.commands
    SET status = 'CANCELED', updated_at = now(),
        cancel_requested = jsonb_build_object(
            'operator', %(operator)s::text, 'reason', %(reason)s::text, 'at', now())
    WHERE domain = %(domain)s AND command_id = %(command_id)s
      AND status IN ('PENDING', 'IN_TROUBLESHOOTING_QUEUE')
    RETURNING domain, command_id, command_type, correlation_id, reply_to, trace_context
), requested AS (
    UPDATE {schema}.commands
    SET cancel_requested = jsonb_build_object(
            'operator', %(operator)s::text, 'reason', %(reason)s::text, 'at', now())
    WHERE domain = %(domain)s AND command_id = %(command_id)s AND status = 'IN_PROGRESS'
    RETURNING command_id
), rep AS (
    INSERT INTO {schema}.replies
        (queue, domain, command_id, command_type, correlation_id, outcome, result,
         error_code, error_message, trace_context)
    SELECT reply_to, domain, command_id, command_type, correlation_id, 'CANCELED', NULL,
           'CANCELED', %(reason)s, trace_context
    FROM canceled
    WHERE reply_to IS NOT NULL
    RETURNING queue
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, 'OPERATOR_CANCEL',
           jsonb_build_object('operator', %(operator)s::text, 'reason', %(reason)s::text)
    FROM canceled
)
SELECT (SELECT count(*) FROM canceled) > 0 AS canceled,
       (SELECT count(*) FROM requested) > 0 AS requested,
       (SELECT count(pg_notify(%(channel)s, '')) FROM rep) AS notified
