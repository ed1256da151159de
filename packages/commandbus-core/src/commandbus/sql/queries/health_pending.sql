-- health_pending: commands deliverable now (PENDING with vt passed), and how long, in
-- seconds, the one that became deliverable first has waited for a worker (NULL if none).
-- Delayed commands and retries waiting out their backoff do not count until they are due.
SELECT count(*) AS ready,
       extract(epoch FROM now() - min(vt))::float8 AS oldest_wait
FROM {schema}.commands
WHERE status = 'PENDING' AND vt <= now()
  AND (%(domain)s::text IS NULL OR domain = %(domain)s)
