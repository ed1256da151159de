-- finish: record the outcomes of many leased commands in one statement.
-- A row counts only if its lease is still ours (same msg_id and read_ct): a handler that
-- overran its lease cannot finish a command another worker has leased since.
-- Lookups use `= ANY (array)` so plans stay index lookups whatever the statistics.
-- retry_delay NULL: the message is done (deleted); otherwise it becomes visible again later.
-- The arrays travel in binary: text arrays would be quoted element by element client side.
WITH input AS (
    SELECT *
    FROM unnest(
        %(msg_id)b::bigint[], %(read_ct)b::int[], %(command_id)b::uuid[], %(status)b::text[],
        %(result)b::text[], %(error_type)b::text[], %(error_code)b::text[],
        %(error_message)b::text[], %(error_traceback)b::text[], %(retry_delay)b::float8[],
        %(event_type)b::text[], %(details)b::text[], %(reply_outcome)b::text[]
    ) AS t(msg_id, read_ct, command_id, status, result, error_type, error_code, error_message,
           error_traceback, retry_delay, event_type, details, reply_outcome)
), released AS (
    DELETE FROM {schema}.queue q
    USING input i
    WHERE q.msg_id = ANY (%(msg_id)b::bigint[])
      AND q.msg_id = i.msg_id AND q.read_ct = i.read_ct AND i.retry_delay IS NULL
    RETURNING q.msg_id
), rescheduled AS (
    UPDATE {schema}.queue q
    SET vt = now() + make_interval(secs => i.retry_delay)
    FROM input i
    WHERE q.msg_id = ANY (%(msg_id)b::bigint[])
      AND q.msg_id = i.msg_id AND q.read_ct = i.read_ct AND i.retry_delay IS NOT NULL
    RETURNING q.msg_id
), owned AS (
    SELECT i.*
    FROM input i
    JOIN (SELECT msg_id FROM released UNION ALL SELECT msg_id FROM rescheduled) o USING (msg_id)
), cmd AS (
    UPDATE {schema}.commands c
    SET status = o.status,
        result = o.result::jsonb,
        last_error_type = COALESCE(o.error_type, c.last_error_type),
        last_error_code = COALESCE(o.error_code, c.last_error_code),
        last_error_message = COALESCE(o.error_message, c.last_error_message),
        last_error_traceback = COALESCE(o.error_traceback, c.last_error_traceback),
        updated_at = now()
    FROM owned o
    WHERE c.domain = %(domain)s
      AND c.command_id = ANY (ARRAY(SELECT command_id FROM owned))
      AND c.command_id = o.command_id
    RETURNING c.command_id, c.command_type, c.correlation_id, c.reply_to, o.result,
              o.reply_outcome, o.error_code, o.error_message, o.event_type, o.details
), rep AS (
    INSERT INTO {schema}.replies
        (queue, domain, command_id, command_type, correlation_id, outcome, result,
         error_code, error_message)
    SELECT reply_to, %(domain)s, command_id, command_type, correlation_id, reply_outcome,
           result::jsonb, error_code, error_message
    FROM cmd
    WHERE reply_to IS NOT NULL AND reply_outcome IS NOT NULL
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT %(domain)s, command_id, event_type, details::jsonb
    FROM cmd
)
SELECT cmd.command_id,
       (SELECT count(pg_notify(c, '')) FROM unnest(%(channels)b::text[]) AS c) AS notified
FROM cmd
