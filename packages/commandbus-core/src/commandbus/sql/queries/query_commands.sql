-- query_commands: filtered listing, newest first. NULL filters match everything.
SELECT domain, command_id, command_type, status, attempts, max_attempts, data,
       correlation_id, reply_to, batch_id, result, last_error_type, last_error_code,
       last_error_message, created_at, updated_at
FROM {schema}.commands
WHERE (%(domain)s::text IS NULL OR domain = %(domain)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(command_type)s::text IS NULL OR command_type = %(command_type)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at > %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
ORDER BY created_at DESC, command_id
LIMIT %(limit)s OFFSET %(offset)s
