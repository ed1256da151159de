-- domain_resume: the domain's workers take work again; the NOTIFY (sent on commit) wakes
-- them at once rather than at their next poll.
WITH resumed AS (
    DELETE FROM {schema}.paused_domains
    WHERE domain = %(domain)s
    RETURNING domain
)
SELECT domain, pg_notify(%(channel)s, '') FROM resumed
