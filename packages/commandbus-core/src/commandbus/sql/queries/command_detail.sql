-- command_detail: one command's whole row, traceback included, for an operator's
-- close look (tsq show, commands show); its audit trail is get_audit_trail.sql.
SELECT domain, command_id, command_type, status, attempts, max_attempts, data, result,
       correlation_id, reply_to, batch_id, last_error_type AS error_type,
       last_error_code AS error_code, last_error_message AS error_message,
       last_error_traceback AS traceback, created_at, updated_at
FROM {schema}.commands
WHERE domain = %(domain)s AND command_id = %(command_id)s
