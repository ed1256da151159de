-- list_troubleshooting: commands parked for operators, most recently parked first.
SELECT domain, command_id, command_type, data, attempts, max_attempts, last_error_type,
       last_error_code, last_error_message, last_error_traceback, correlation_id, reply_to,
       batch_id, created_at, updated_at
FROM {schema}.commands
WHERE status = 'IN_TROUBLESHOOTING_QUEUE'
  AND (%(domain)s::text IS NULL OR domain = %(domain)s)
  AND (%(command_type)s::text IS NULL OR command_type = %(command_type)s)
ORDER BY updated_at DESC, command_id
LIMIT %(limit)s OFFSET %(offset)s
