-- metrics_gauges: per domain, what a Prometheus scrape reports (commandbus.metrics): the
-- moving commands, for every domain with moving commands or a pause. One aggregate per
-- status, each over its partial index (commands_pending_idx, commands_leased_idx), so a
-- scrape reads the backlog, never the history. A domain without either still reports
-- (zeros): commandbus.metrics adds the domains of the worker registry, of the
-- troubleshooting queue (metrics_troubleshooting.sql) and of its earlier scrapes.
WITH pending AS (
    SELECT domain, count(*) AS pending,
           count(*) FILTER (WHERE vt <= now()) AS ready,
           extract(epoch FROM now() - min(vt) FILTER (WHERE vt <= now()))::float8
               AS oldest_ready_age
    FROM {schema}.commands
    WHERE status = 'PENDING'
    GROUP BY domain
), leased AS (
    SELECT domain, count(*) AS in_flight
    FROM {schema}.commands
    WHERE status = 'IN_PROGRESS'
    GROUP BY domain
)
SELECT domain, coalesce(p.pending, 0) AS pending, coalesce(p.ready, 0) AS ready,
       coalesce(l.in_flight, 0) AS in_flight,
       coalesce(p.oldest_ready_age, 0) AS oldest_ready_age,
       d.domain IS NOT NULL AS paused
FROM pending p
FULL JOIN leased l USING (domain)
FULL JOIN {schema}.paused_domains d USING (domain)
ORDER BY domain
