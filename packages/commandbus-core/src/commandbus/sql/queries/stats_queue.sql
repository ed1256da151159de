-- stats_queue: per domain, the commands not finished yet (depth: pending, leased or
-- waiting for a retry), those deliverable now (ready), the age in seconds of the oldest
-- one, how long the longest-waiting deliverable command has waited for a worker, and
-- whether the domain is paused (its ready commands then wait for a resume, not a worker).
SELECT domain,
       count(*) AS depth,
       count(*) FILTER (WHERE status = 'PENDING' AND vt <= now()) AS ready,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_pending_age,
       extract(epoch FROM now() - min(vt) FILTER (WHERE status = 'PENDING' AND vt <= now()))::float8
           AS ready_wait,
       domain IN (SELECT p.domain FROM {schema}.paused_domains p) AS paused
FROM {schema}.commands
WHERE status IN ('PENDING', 'IN_PROGRESS')
GROUP BY domain
ORDER BY domain
