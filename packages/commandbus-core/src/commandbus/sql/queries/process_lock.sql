-- process_lock: the process a reply is for, locked until the reply's transaction ends, so
-- replies for one process are applied one at a time.
SELECT process_id, domain, process_type, status, current_step, current_command_id, state,
       completed_steps, compensation_steps
FROM {schema}.processes
WHERE process_id = %(process_id)s
FOR UPDATE
