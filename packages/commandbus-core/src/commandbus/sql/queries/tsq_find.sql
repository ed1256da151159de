-- tsq_find: one page of parked commands matching a filter, newest parked first.
-- Keyset pagination on (updated_at, domain, command_id), served by
-- commands_parked_keyset_idx (0007) read backwards: no OFFSET, no count.
SELECT c.domain, c.command_id, c.command_type, c.data, c.attempts, c.max_attempts,
       c.last_error_type, c.last_error_code, c.last_error_message, c.last_error_traceback,
       c.correlation_id, c.reply_to, c.batch_id, c.created_at, c.updated_at
FROM {schema}.commands c
WHERE {match}
  AND (%(after_parked_at)s::timestamptz IS NULL
       OR (c.updated_at, c.domain, c.command_id)
          < (%(after_parked_at)s, %(after_domain)s::text, %(after_command_id)s::uuid))
ORDER BY c.updated_at DESC, c.domain DESC, c.command_id DESC
LIMIT %(limit)s
