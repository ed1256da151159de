-- console_domains: the domains with commands moving or parked (a loose index scan of each
-- partial index: one index probe per domain, however many commands wait), with commands
-- sent within the window, or with a registered worker. Sorted.
WITH RECURSIVE pending AS (
    SELECT min(domain) AS domain FROM {schema}.commands WHERE status = 'PENDING'
    UNION ALL
    SELECT (SELECT min(c.domain) FROM {schema}.commands c
            WHERE c.status = 'PENDING' AND c.domain > p.domain)
    FROM pending p WHERE p.domain IS NOT NULL
), leased AS (
    SELECT min(domain) AS domain FROM {schema}.commands WHERE status = 'IN_PROGRESS'
    UNION ALL
    SELECT (SELECT min(c.domain) FROM {schema}.commands c
            WHERE c.status = 'IN_PROGRESS' AND c.domain > p.domain)
    FROM leased p WHERE p.domain IS NOT NULL
), parked AS (
    SELECT min(domain) AS domain FROM {schema}.commands
    WHERE status = 'IN_TROUBLESHOOTING_QUEUE'
    UNION ALL
    SELECT (SELECT min(c.domain) FROM {schema}.commands c
            WHERE c.status = 'IN_TROUBLESHOOTING_QUEUE' AND c.domain > p.domain)
    FROM parked p WHERE p.domain IS NOT NULL
)
SELECT domain FROM pending WHERE domain IS NOT NULL
UNION
SELECT domain FROM leased WHERE domain IS NOT NULL
UNION
SELECT domain FROM parked WHERE domain IS NOT NULL
UNION
SELECT DISTINCT domain FROM {schema}.commands
WHERE created_at > now() - make_interval(secs => %(window)s)
UNION
SELECT domain FROM {schema}.workers WHERE kind = 'worker'
ORDER BY domain
