-- get_command: one command's system-of-record row.
SELECT domain, command_id, command_type, status, attempts, max_attempts, data,
       correlation_id, reply_to, batch_id, result, last_error_type, last_error_code,
       last_error_message, created_at, updated_at
FROM {schema}.commands
WHERE domain = %(domain)s AND command_id = %(command_id)s
