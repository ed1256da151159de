-- process_start: a new process waiting for the reply to its first command, and the audit
-- entry of that command. The command itself is written by send.sql in the same transaction.
WITH p AS (
    INSERT INTO {schema}.processes
        (process_id, domain, process_type, status, current_step, current_command_domain,
         current_command_id, state)
    VALUES (%(process_id)s, %(domain)s, %(process_type)s, 'WAITING_FOR_REPLY', %(step)s,
            %(command_domain)s, %(command_id)s, %(state)s::jsonb)
    RETURNING process_id
)
INSERT INTO {schema}.process_audit
    (process_id, entry_type, step, command_domain, command_id, command_type, command_data,
     sent_at)
SELECT process_id, 'STEP', %(step)s, %(command_domain)s, %(command_id)s, %(command_type)s,
       %(command_data)s::jsonb, now()
FROM p
