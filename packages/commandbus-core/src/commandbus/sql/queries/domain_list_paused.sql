-- domain_list_paused: the paused domains, by name.
SELECT domain, operator, reason, paused_at
FROM {schema}.paused_domains
ORDER BY domain
