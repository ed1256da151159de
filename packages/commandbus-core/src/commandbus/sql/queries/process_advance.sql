-- process_advance: apply a reply to a locked process: its new status and state, the reply
-- on the audit entry of the command it answers, and the audit entry of the next command
-- (if any; the command itself is written by send.sql in the same transaction). A process
-- that ends keeps its last step and command, to show where it ended.
WITH upd AS (
    UPDATE {schema}.processes
    SET status = %(status)s,
        current_step = COALESCE(%(current_step)s, current_step),
        current_command_domain = COALESCE(%(command_domain)s, current_command_domain),
        current_command_id = COALESCE(%(command_id)s::uuid, current_command_id),
        state = %(state)s::jsonb,
        completed_steps = %(completed_steps)s::jsonb,
        compensation_steps = %(compensation_steps)s::jsonb,
        error_code = COALESCE(%(error_code)s, error_code),
        error_message = COALESCE(%(error_message)s, error_message),
        updated_at = now(),
        completed_at = CASE WHEN %(final)s::boolean THEN now() END
    WHERE process_id = %(process_id)s
    RETURNING process_id
), replied AS (
    UPDATE {schema}.process_audit
    SET reply_outcome = %(reply_outcome)s,
        reply_data = %(reply_data)s::jsonb,
        error_code = %(reply_error_code)s,
        error_message = %(reply_error_message)s,
        received_at = now()
    WHERE process_id = %(process_id)s AND command_id = %(reply_command_id)s
      AND received_at IS NULL
)
INSERT INTO {schema}.process_audit
    (process_id, entry_type, step, command_domain, command_id, command_type, command_data,
     sent_at)
SELECT process_id, %(entry_type)s, %(current_step)s, %(command_domain)s, %(command_id)s::uuid,
       %(command_type)s, %(command_data)s::jsonb, now()
FROM upd
WHERE %(command_id)s::uuid IS NOT NULL
