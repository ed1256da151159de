-- stats_queue: per domain, the messages not finished yet (depth: pending, leased or
-- waiting for a retry), those deliverable now (ready), the age in seconds of the oldest
-- one, and how long the longest-waiting deliverable message has waited for a worker.
SELECT domain,
       count(*) AS depth,
       count(*) FILTER (WHERE vt <= now()) AS ready,
       extract(epoch FROM now() - min(enqueued_at))::float8 AS oldest_pending_age,
       extract(epoch FROM now() - min(vt) FILTER (WHERE vt <= now()))::float8 AS ready_wait
FROM {schema}.queue
GROUP BY domain
ORDER BY domain
