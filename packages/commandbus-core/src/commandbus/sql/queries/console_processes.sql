-- console_processes: a page of processes of every domain (or one), newest first, after a
-- keyset cursor (created_at, process_id); the status filter is on the derived status.
-- The page is chosen from the processes table first (index processes_created_idx or
-- processes_domain_idx) and only its rows are derived through process_summary; when
-- the filter is WAITING_FOR_REPLY or WAITING_FOR_TSQ (one stored status, two derived)
-- the inner page is not limited, since the derived filter applies after it.
SELECT process_id, domain, process_type, status, current_step, current_command_domain,
       current_command_id, current_command_status, state, completed_steps,
       compensation_steps, error_code, error_message, created_at, updated_at, completed_at
FROM {schema}.process_summary
WHERE process_id IN (
    SELECT p.process_id FROM {schema}.processes p
    WHERE (%(domain)s::text IS NULL OR p.domain = %(domain)s)
      AND (%(process_type)s::text IS NULL OR p.process_type = %(process_type)s)
      AND (%(status)s::text IS NULL
           OR p.status = CASE WHEN %(status)s = 'WAITING_FOR_TSQ' THEN 'WAITING_FOR_REPLY'
                              ELSE %(status)s END)
      AND (%(cursor_at)s::timestamptz IS NULL
           OR (p.created_at, p.process_id) < (%(cursor_at)s, %(cursor_id)s::uuid))
    ORDER BY p.created_at DESC, p.process_id DESC
    LIMIT CASE WHEN %(status)s IN ('WAITING_FOR_REPLY', 'WAITING_FOR_TSQ') THEN NULL
               ELSE %(limit)s END
)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC, process_id DESC
LIMIT %(limit)s
