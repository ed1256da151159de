-- process_get: one process with its derived status (view process_summary).
SELECT process_id, domain, process_type, status, current_step, current_command_domain,
       current_command_id, current_command_status, state, completed_steps,
       compensation_steps, error_code, error_message, created_at, updated_at, completed_at
FROM {schema}.process_summary
WHERE process_id = %(process_id)s
