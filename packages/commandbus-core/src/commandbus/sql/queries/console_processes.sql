-- console_processes: a page of processes of every domain (or one), newest first, after a
-- keyset cursor (created_at, process_id); the status filter is on the derived status.
SELECT process_id, domain, process_type, status, current_step, current_command_domain,
       current_command_id, current_command_status, state, completed_steps,
       compensation_steps, error_code, error_message, created_at, updated_at, completed_at
FROM {schema}.process_summary
WHERE (%(domain)s::text IS NULL OR domain = %(domain)s)
  AND (%(process_type)s::text IS NULL OR process_type = %(process_type)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (created_at, process_id) < (%(cursor_at)s, %(cursor_id)s::uuid))
ORDER BY created_at DESC, process_id DESC
LIMIT %(limit)s
