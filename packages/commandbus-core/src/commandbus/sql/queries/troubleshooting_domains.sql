-- troubleshooting_domains: domains that have commands waiting for an operator.
SELECT DISTINCT domain
FROM {schema}.commands
WHERE status = 'IN_TROUBLESHOOTING_QUEUE'
ORDER BY domain
