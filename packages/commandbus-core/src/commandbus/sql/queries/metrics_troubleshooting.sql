-- metrics_troubleshooting: the troubleshooting queue by domain and error group (command
-- type, error type and code), for a Prometheus scrape (commandbus.metrics). It reads every
-- parked row: commandbus.metrics reuses a reading for a while when it was slow.
SELECT domain, command_type, coalesce(last_error_type, '') AS error_type,
       coalesce(last_error_code, '') AS error_code, count(*) AS parked
FROM {schema}.commands
WHERE status = 'IN_TROUBLESHOOTING_QUEUE'
GROUP BY 1, 2, 3, 4
ORDER BY parked DESC, 1, 2, 3, 4
