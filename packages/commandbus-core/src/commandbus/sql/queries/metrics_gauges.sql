-- metrics_gauges: per domain, what a Prometheus scrape reports (commandbus.metrics): the
-- moving commands (commands_pending_idx and commands_leased_idx hold only those), for
-- every domain with moving commands or a pause. A domain without either still reports
-- (zeros): commandbus.metrics adds the domains of the worker registry and of its
-- earlier scrapes. Parked commands are counted by metrics_troubleshooting.sql.
WITH moving AS (
    SELECT domain,
           count(*) FILTER (WHERE status = 'PENDING') AS pending,
           count(*) FILTER (WHERE status = 'PENDING' AND vt <= now()) AS ready,
           count(*) FILTER (WHERE status = 'IN_PROGRESS') AS in_flight,
           extract(epoch FROM now() - min(vt) FILTER (WHERE status = 'PENDING'
                                                       AND vt <= now()))::float8
               AS oldest_ready_age
    FROM {schema}.commands
    WHERE status IN ('PENDING', 'IN_PROGRESS')
    GROUP BY domain
)
SELECT domain, coalesce(m.pending, 0) AS pending, coalesce(m.ready, 0) AS ready,
       coalesce(m.in_flight, 0) AS in_flight, coalesce(m.oldest_ready_age, 0) AS oldest_ready_age,
       p.domain IS NOT NULL AS paused
FROM moving m
FULL JOIN {schema}.paused_domains p USING (domain)
ORDER BY domain
