-- batch_commands: the commands of one batch, in a stable order for paging.
SELECT domain, command_id, command_type, status, attempts, max_attempts, data,
       correlation_id, reply_to, batch_id, result, last_error_type, last_error_code,
       last_error_message, created_at, updated_at
FROM {schema}.commands
WHERE batch_id = %(batch_id)s AND domain = %(domain)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at, command_id
LIMIT %(limit)s OFFSET %(offset)s
