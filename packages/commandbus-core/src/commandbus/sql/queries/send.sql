-- send: write commands, their queue messages and SENT audit events in one statement.
-- One array element per command; duplicates are skipped by ON CONFLICT and detected by
-- the caller from the rows returned. At most one NOTIFY per distinct, due domain.
WITH input AS (
    SELECT *
    FROM unnest(
        %(domain)s::text[], %(command_id)s::uuid[], %(command_type)s::text[],
        %(max_attempts)s::int[], %(data)s::text[], %(correlation_id)s::uuid[],
        %(reply_to)s::text[], %(delay)s::float8[]
    ) AS t(domain, command_id, command_type, max_attempts, data, correlation_id, reply_to, delay)
), cmd AS (
    INSERT INTO {schema}.commands
        (domain, command_id, command_type, status, max_attempts, data,
         correlation_id, reply_to, batch_id)
    SELECT domain, command_id, command_type, 'PENDING', max_attempts, data::jsonb,
           correlation_id, reply_to, %(batch_id)s::uuid
    FROM input
    ON CONFLICT DO NOTHING
    RETURNING domain, command_id
), msg AS (
    INSERT INTO {schema}.queue (domain, command_id, vt)
    SELECT i.domain, i.command_id, now() + make_interval(secs => i.delay)
    FROM cmd JOIN input i USING (domain, command_id)
    RETURNING msg_id, domain, command_id
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, 'SENT', jsonb_build_object('msg_id', msg_id)
    FROM msg
)
SELECT msg.domain, msg.command_id, msg.msg_id,
       (SELECT count(pg_notify(c, '')) FROM unnest(%(channels)s::text[]) AS c) AS notified
FROM msg
