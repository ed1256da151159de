-- send: write commands, their queue messages and SENT audit events in one statement.
-- The commands travel as one JSON array parameter (one element per command): one value
-- to send whatever the batch size, and each `data` is parsed once, as part of it.
-- {on_conflict} picks how a duplicate (domain, command_id) ends the statement:
--   "ON CONFLICT DO NOTHING" inside a transaction the caller controls: a duplicate is
--     skipped, the caller sees its row missing from the result, raises and rolls back;
--   "" when the statement runs alone in autocommit: a duplicate fails the whole statement
--     with unique_violation, so nothing is written, in one round trip.
-- At most one NOTIFY per distinct, due domain.
WITH input AS (
    SELECT *
    FROM jsonb_to_recordset(%(commands)s::jsonb) AS t(
        domain text, command_id uuid, command_type text, max_attempts int, data jsonb,
        correlation_id uuid, reply_to text, delay float8)
), cmd AS (
    INSERT INTO {schema}.commands
        (domain, command_id, command_type, status, max_attempts, data,
         correlation_id, reply_to, batch_id)
    SELECT domain, command_id, command_type, 'PENDING', max_attempts, data,
           correlation_id, reply_to, %(batch_id)s::uuid
    FROM input
    {on_conflict}
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
