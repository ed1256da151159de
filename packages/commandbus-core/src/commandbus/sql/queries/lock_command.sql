-- lock_command: lock one command row for an operator action; concurrent actions queue here.
SELECT status, reply_to
FROM {schema}.commands
WHERE domain = %(domain)s AND command_id = %(command_id)s
FOR UPDATE
