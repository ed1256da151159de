-- process_audit_trail: every command a process sent (with its reply) and every reply it
-- did not apply, in the order they happened.
SELECT seq, process_id, entry_type, step, command_domain, command_id, command_type,
       command_data, sent_at, reply_outcome, reply_data, error_code, error_message,
       received_at, note
FROM {schema}.process_audit
WHERE process_id = %(process_id)s
ORDER BY seq
