-- stats_commands: how many commands each domain has in each status (`commandbus stats`).
-- Reads the whole commands table: meant for operators, not for a tight monitoring loop.
SELECT domain, status, count(*) AS n
FROM {schema}.commands
GROUP BY domain, status
ORDER BY domain, status
