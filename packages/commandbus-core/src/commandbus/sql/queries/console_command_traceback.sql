-- console_command_traceback: the last error's traceback and the delivery fields of one
-- command, which CommandMetadata does not carry.
SELECT last_error_traceback, priority, vt, worker
FROM {schema}.commands
WHERE domain = %(domain)s AND command_id = %(command_id)s
