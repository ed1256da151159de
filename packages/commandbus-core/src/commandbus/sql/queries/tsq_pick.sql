-- tsq_pick: the next chunk of a bulk action, in tsq_find's order (newest parked first).
-- The lock placeholder is FOR UPDATE OF c for a real action and empty for a dry run.
-- Under FOR UPDATE a row another operator holds is waited for, then checked again: if it
-- left the queue meanwhile it is skipped, so no command is acted on twice. Only commands
-- parked at or before as_of (the first chunk's statement time, returned for the next
-- chunks) are picked: a command retried by an earlier chunk that fails and is parked
-- again is not retried a second time by the same call.
SELECT c.domain, c.command_id, c.reply_to, c.updated_at AS parked_at,
       COALESCE(%(as_of)s::timestamptz, statement_timestamp()) AS as_of
FROM {schema}.commands c
WHERE {match}
  AND c.updated_at <= COALESCE(%(as_of)s::timestamptz, statement_timestamp())
  AND (%(after_parked_at)s::timestamptz IS NULL
       OR (c.updated_at, c.domain, c.command_id)
          < (%(after_parked_at)s, %(after_domain)s::text, %(after_command_id)s::uuid))
ORDER BY c.updated_at DESC, c.domain DESC, c.command_id DESC
LIMIT %(limit)s
{lock}
