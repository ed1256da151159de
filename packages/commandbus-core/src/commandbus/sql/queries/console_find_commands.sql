-- console_find_commands: a page of commands, newest first, after a keyset cursor
-- (created_at, command_id). NULL filters match everything. By id the primary key answers,
-- by correlation id commands_correlation_idx, otherwise commands_created_idx backwards.
SELECT domain, command_id, command_type, status, attempts, max_attempts, data,
       correlation_id, reply_to, batch_id, result, last_error_type, last_error_code,
       last_error_message, created_at, updated_at
FROM {schema}.commands
WHERE (%(command_id)s::uuid IS NULL OR command_id = %(command_id)s)
  AND (%(correlation_id)s::uuid IS NULL OR correlation_id = %(correlation_id)s)
  AND (%(domain)s::text IS NULL OR domain = %(domain)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(command_type)s::text IS NULL OR command_type = %(command_type)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at > %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (created_at, command_id) < (%(cursor_at)s, %(cursor_id)s::uuid))
ORDER BY created_at DESC, command_id DESC
LIMIT %(limit)s
