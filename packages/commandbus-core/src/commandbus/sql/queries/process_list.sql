-- process_list: a domain's processes, newest first; NULL filters match everything.
-- The status filter applies to the derived status (WAITING_FOR_TSQ included).
SELECT process_id, domain, process_type, status, current_step, current_command_domain,
       current_command_id, current_command_status, state, completed_steps,
       compensation_steps, error_code, error_message, created_at, updated_at, completed_at
FROM {schema}.process_summary
WHERE domain = %(domain)s
  AND (%(process_type)s::text IS NULL OR process_type = %(process_type)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC, process_id
LIMIT %(limit)s OFFSET %(offset)s
