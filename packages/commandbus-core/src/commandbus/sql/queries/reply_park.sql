-- reply_park: set a reply aside for operators (its queue row is acked in the same
-- transaction), noted in the process audit when the process exists.
WITH parked AS (
    INSERT INTO {schema}.parked_replies
        (queue, domain, command_id, command_type, correlation_id, outcome, result,
         error_code, error_message, read_ct, enqueued_at, reason_code, reason, traceback,
         trace_context)
    VALUES (%(queue)s, %(command_domain)s, %(command_id)s, %(command_type)s,
            %(correlation_id)s::uuid, %(reply_outcome)s, %(reply_data)s::jsonb,
            %(reply_error_code)s, %(reply_error_message)s, %(read_ct)s,
            %(enqueued_at)s::timestamptz, %(reason_code)s, %(reason)s, %(traceback)s,
            %(trace_context)s::jsonb)
    RETURNING parked_id
), noted AS (
    INSERT INTO {schema}.process_audit
        (process_id, entry_type, command_domain, command_id, command_type, reply_outcome,
         reply_data, error_code, error_message, received_at, note)
    SELECT %(correlation_id)s::uuid, 'PARKED_REPLY', %(command_domain)s, %(command_id)s,
           %(command_type)s, %(reply_outcome)s, %(reply_data)s::jsonb, %(reply_error_code)s,
           %(reply_error_message)s, now(), %(reason_code)s || ': ' || %(reason)s
    FROM parked
    WHERE EXISTS (SELECT 1 FROM {schema}.processes
                  WHERE process_id = %(correlation_id)s::uuid)
)
SELECT parked_id FROM parked
