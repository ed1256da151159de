-- operator_resolve: an operator ends a parked command (CANCELED or COMPLETED), with the
-- matching reply to its reply_to queue and an audit event naming the operator and the
-- reason. The reply carries reply_message: a cancel's reason, nothing for a completion.
WITH cmd AS (
    UPDATE {schema}.commands
    SET status = %(status)s, result = %(result)s::jsonb, updated_at = now()
    WHERE domain = %(domain)s AND command_id = %(command_id)s
      AND status = 'IN_TROUBLESHOOTING_QUEUE'
    RETURNING domain, command_id, command_type, correlation_id, reply_to, result, trace_context
), rep AS (
    INSERT INTO {schema}.replies
        (queue, domain, command_id, command_type, correlation_id, outcome, result,
         error_code, error_message, trace_context)
    SELECT reply_to, domain, command_id, command_type, correlation_id, %(outcome)s, result,
           %(error_code)s, %(reply_message)s, trace_context
    FROM cmd
    WHERE reply_to IS NOT NULL
    RETURNING queue
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, %(event_type)s,
           jsonb_build_object('operator', %(operator)s::text, 'reason', %(reason)s::text)
    FROM cmd
)
SELECT cmd.command_id, (SELECT count(pg_notify(%(channel)s, '')) FROM rep) AS notified
FROM cmd
