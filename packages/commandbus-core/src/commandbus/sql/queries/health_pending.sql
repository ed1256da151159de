-- health_pending: commands deliverable now (PENDING with vt passed) in domains that are
-- not paused, and how long, in seconds, the one that became deliverable first has waited
-- for a worker (NULL if none); and how many deliverable commands wait in paused domains
-- (for a resume, not for a worker: no failure). Delayed commands and retries waiting out
-- their backoff do not count until they are due.
SELECT count(*) FILTER (WHERE p.domain IS NULL) AS ready,
       extract(epoch FROM now() - min(c.vt) FILTER (WHERE p.domain IS NULL))::float8
           AS oldest_wait,
       count(*) FILTER (WHERE p.domain IS NOT NULL) AS paused_ready
FROM {schema}.commands c
LEFT JOIN {schema}.paused_domains p ON p.domain = c.domain
WHERE c.status = 'PENDING' AND c.vt <= now()
  AND (%(domain)s::text IS NULL OR c.domain = %(domain)s)
