-- process_note_reply: record a reply a process did not apply (stale, duplicate, or for a
-- finished process), and why.
INSERT INTO {schema}.process_audit
    (process_id, entry_type, command_domain, command_id, command_type, reply_outcome,
     reply_data, error_code, error_message, received_at, note)
VALUES (%(process_id)s, 'IGNORED_REPLY', %(command_domain)s, %(command_id)s, %(command_type)s,
        %(reply_outcome)s, %(reply_data)s::jsonb, %(reply_error_code)s,
        %(reply_error_message)s, now(), %(note)s)
