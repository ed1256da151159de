-- send: write commands in one statement: one row each, deliverable at `vt`.
-- The commands travel as one JSON array parameter (one element per command): one value
-- to send whatever the batch size, and each `data` is parsed once, as part of it.
-- The SENT audit event is derived from the row (msg_id, created_at): nothing else to write.
-- {on_conflict} picks how a duplicate (domain, command_id) ends the statement:
--   "ON CONFLICT DO NOTHING" inside a transaction the caller controls: a duplicate is
--     skipped, the caller sees its row missing from the result, raises and rolls back;
--   "" when the statement runs alone in autocommit: a duplicate fails the whole statement
--     with unique_violation, so nothing is written, in one round trip.
-- At most one NOTIFY per distinct, due domain: `channels` is their names joined by commas
-- (a channel name has none), one text parameter rather than an array (cheaper to bind on
-- the one-command send, the common case). `trace_context`: the sending span's
-- propagation headers (JSON), NULL unless tracing is on; one send is one span.
WITH cmd AS (
    INSERT INTO {schema}.commands
        (domain, command_id, command_type, status, max_attempts, data,
         correlation_id, reply_to, batch_id, priority, vt, trace_context)
    SELECT domain, command_id, command_type, 'PENDING', max_attempts, data,
           correlation_id, reply_to, %(batch_id)s::uuid, priority,
           now() + make_interval(secs => delay), %(trace_context)s::jsonb
    FROM jsonb_to_recordset(%(commands)s::jsonb) AS t(
        domain text, command_id uuid, command_type text, max_attempts int, data jsonb,
        correlation_id uuid, reply_to text, delay float8, priority int)
    {on_conflict}
    RETURNING domain, command_id, msg_id
)
SELECT domain, command_id, msg_id,
       (SELECT count(pg_notify(c, '')) FROM string_to_table(%(channels)s::text, ',') AS c) AS notified
FROM cmd
