-- console_domain_stats: per domain, counts capped at %(cap)s + 1 (never an unbounded
-- count: each reads at most cap + 1 entries of a partial index), and the age of the
-- oldest ready command (one probe of the pending index per priority, 0 to 9).
SELECT d.domain,
       (SELECT count(*) FROM (SELECT 1 FROM {schema}.commands c
                              WHERE c.domain = d.domain AND c.status = 'PENDING'
                              LIMIT %(cap)s + 1) x)::int AS pending,
       (SELECT count(*) FROM (SELECT 1 FROM {schema}.commands c
                              WHERE c.domain = d.domain AND c.status = 'IN_PROGRESS'
                              LIMIT %(cap)s + 1) x)::int AS in_flight,
       (SELECT count(*) FROM (SELECT 1 FROM {schema}.commands c
                              WHERE c.domain = d.domain
                                AND c.status = 'IN_TROUBLESHOOTING_QUEUE'
                              LIMIT %(cap)s + 1) x)::int AS troubleshooting,
       (SELECT extract(epoch FROM now() - min(o.vt))::float8
        FROM generate_series(0, 9) AS p(priority)
        CROSS JOIN LATERAL (SELECT c.vt FROM {schema}.commands c
                            WHERE c.domain = d.domain AND c.status = 'PENDING'
                              AND c.priority = p.priority AND c.vt <= now()
                            ORDER BY c.vt LIMIT 1) o) AS oldest_ready_age
FROM unnest(%(domains)s::text[]) AS d(domain)
ORDER BY d.domain
