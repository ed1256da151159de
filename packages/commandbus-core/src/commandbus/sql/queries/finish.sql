-- finish: record the outcomes of many leased commands in one statement.
-- A row counts only if its lease is still ours (same lease_id and worker): a handler that
-- overran its lease cannot finish a command another worker has leased since.
-- Lookups use `= ANY (array)` so plans stay index lookups whatever the statistics.
-- retry_delay NULL: the command is done; otherwise it is deliverable again after it.
-- A success is derived from the row (status COMPLETED, its lease): no audit row. Any
-- other outcome is stored as one audit row that also carries the lease it ended, and
-- the row's lease_id is cleared.
-- The arrays travel in binary: text arrays would be quoted element by element client side.
WITH input AS (
    SELECT *
    FROM unnest(
        %(command_id)b::uuid[], %(lease_id)b::bigint[], %(status)b::text[],
        %(result)b::text[], %(error_type)b::text[], %(error_code)b::text[],
        %(error_message)b::text[], %(error_traceback)b::text[], %(retry_delay)b::float8[],
        %(event_type)b::text[], %(details)b::text[], %(reply_outcome)b::text[]
    ) AS t(command_id, lease_id, status, result, error_type, error_code, error_message,
           error_traceback, retry_delay, event_type, details, reply_outcome)
), cmd AS (
    UPDATE {schema}.commands c
    SET status = i.status,
        result = i.result::jsonb,
        last_error_type = COALESCE(i.error_type, c.last_error_type),
        last_error_code = COALESCE(i.error_code, c.last_error_code),
        last_error_message = COALESCE(i.error_message, c.last_error_message),
        last_error_traceback = COALESCE(i.error_traceback, c.last_error_traceback),
        vt = now() + make_interval(secs => i.retry_delay),
        lease_id = CASE WHEN i.event_type = 'COMPLETED' THEN c.lease_id END,
        -- A cancel request outlives only a retry (the next lease then cancels it).
        cancel_requested = CASE WHEN i.status = 'PENDING' THEN c.cancel_requested END,
        updated_at = now()
    FROM input i
    WHERE c.command_id = ANY (%(command_id)b::uuid[])
      AND c.domain = %(domain)s
      AND c.command_id = i.command_id AND c.lease_id = i.lease_id
      AND c.worker = %(worker)s AND c.status = 'IN_PROGRESS'
    RETURNING c.command_id, c.command_type, c.correlation_id, c.reply_to, c.leased_at,
              c.worker, c.trace_context, i.lease_id, i.result, i.reply_outcome, i.error_code,
              i.error_message, i.event_type, i.details
), rep AS (
    INSERT INTO {schema}.replies
        (queue, domain, command_id, command_type, correlation_id, outcome, result,
         error_code, error_message, trace_context)
    SELECT reply_to, %(domain)s, command_id, command_type, correlation_id, reply_outcome,
           result::jsonb, error_code, error_message, trace_context
    FROM cmd
    WHERE reply_to IS NOT NULL AND reply_outcome IS NOT NULL
), aud AS (
    INSERT INTO {schema}.audit
        (domain, command_id, event_type, details, lease_id, leased_at, worker)
    SELECT %(domain)s, command_id, event_type, details::jsonb, lease_id, leased_at, worker
    FROM cmd
    WHERE event_type <> 'COMPLETED'
)
SELECT cmd.command_id,
       (SELECT count(pg_notify(c, '')) FROM unnest(%(channels)b::text[]) AS c) AS notified
FROM cmd
