-- get_audit_trail: every state change of one command, in the order it happened.
SELECT audit_id, domain, command_id, event_type, details, created_at
FROM {schema}.audit
WHERE command_id = %(command_id)s AND (%(domain)s::text IS NULL OR domain = %(domain)s)
ORDER BY audit_id
