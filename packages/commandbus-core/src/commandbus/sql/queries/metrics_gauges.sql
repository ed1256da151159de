-- metrics_gauges: per domain, what a Prometheus scrape reports (commandbus.metrics).
-- Only moving and parked commands are read: the partial indexes cover them.
SELECT domain,
       count(*) FILTER (WHERE status = 'PENDING') AS pending,
       count(*) FILTER (WHERE status = 'PENDING' AND vt <= now()) AS ready,
       count(*) FILTER (WHERE status = 'IN_PROGRESS') AS in_flight,
       count(*) FILTER (WHERE status = 'IN_TROUBLESHOOTING_QUEUE') AS troubleshooting,
       extract(epoch FROM now() - min(vt) FILTER (WHERE status = 'PENDING' AND vt <= now()))
           AS oldest_ready_age
FROM {schema}.commands
WHERE status IN ('PENDING', 'IN_PROGRESS', 'IN_TROUBLESHOOTING_QUEUE')
GROUP BY domain
ORDER BY domain
