-- domain_pause: workers of the domain lease nothing from their next dequeue on (within a
-- poll interval). Pausing a paused domain updates the operator and reason, keeps paused_at.
INSERT INTO {schema}.paused_domains AS p (domain, operator, reason)
VALUES (%(domain)s, %(operator)s, %(reason)s)
ON CONFLICT (domain) DO UPDATE
SET operator = excluded.operator, reason = excluded.reason
RETURNING domain, operator, reason, paused_at
