-- count_troubleshooting: how many commands wait for an operator (one domain or all).
SELECT count(*)
FROM {schema}.commands
WHERE status = 'IN_TROUBLESHOOTING_QUEUE'
  AND (%(domain)s::text IS NULL OR domain = %(domain)s)
