-- parked_reply_retry: put a parked reply back on its queue, deliverable now, with a fresh
-- attempt budget; the command it answers gets an OPERATOR_REPLY_RETRY audit event with the
-- operator and the reason (in this statement: both happen, or neither).
WITH taken AS (
    DELETE FROM {schema}.parked_replies
    WHERE parked_id = %(parked_id)s
    RETURNING parked_id, queue, domain, command_id, command_type, correlation_id, outcome,
              result, error_code, error_message, trace_context, reason_code
), sent AS (
    INSERT INTO {schema}.replies
        (queue, domain, command_id, command_type, correlation_id, outcome, result, error_code,
         error_message, trace_context)
    SELECT queue, domain, command_id, command_type, correlation_id, outcome, result,
           error_code, error_message, trace_context
    FROM taken
    RETURNING msg_id, queue
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT t.domain, t.command_id, 'OPERATOR_REPLY_RETRY',
           jsonb_build_object('operator', %(operator)s::text, 'reason', %(reason)s::text,
                              'parked_id', t.parked_id, 'queue', t.queue,
                              'parked_reason', t.reason_code, 'msg_id', s.msg_id)
    FROM taken t CROSS JOIN sent s
)
SELECT msg_id, queue FROM sent
