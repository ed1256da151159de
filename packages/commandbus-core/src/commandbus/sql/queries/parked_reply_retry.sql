-- parked_reply_retry: put a parked reply back on its queue, deliverable now, with a fresh
-- attempt budget.
WITH taken AS (
    DELETE FROM {schema}.parked_replies
    WHERE parked_id = %(parked_id)s
    RETURNING queue, domain, command_id, command_type, correlation_id, outcome, result,
              error_code, error_message, trace_context
)
INSERT INTO {schema}.replies
    (queue, domain, command_id, command_type, correlation_id, outcome, result, error_code,
     error_message, trace_context)
SELECT queue, domain, command_id, command_type, correlation_id, outcome, result, error_code,
       error_message, trace_context
FROM taken
RETURNING msg_id, queue
