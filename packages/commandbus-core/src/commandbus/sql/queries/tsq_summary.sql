-- tsq_summary: parked commands matching a filter, grouped by how they failed; the
-- biggest groups first. Reads only parked rows (the partial troubleshooting indexes).
SELECT c.domain, c.command_type, c.last_error_type AS error_type,
       c.last_error_code AS error_code, count(*)::int AS count,
       min(c.updated_at) AS oldest, max(c.updated_at) AS newest,
       (array_agg(c.last_error_message ORDER BY c.updated_at DESC))[1] AS sample_message
FROM {schema}.commands c
WHERE {match}
GROUP BY c.domain, c.command_type, c.last_error_type, c.last_error_code
ORDER BY count(*) DESC, c.domain, c.command_type, c.last_error_type, c.last_error_code
