-- tsq_resolve_many: operator_resolve for many commands locked by tsq_pick in this
-- transaction: each ends CANCELED or COMPLETED, its reply_to queue gets the matching
-- reply, and one audit event names the operator and the reason. The channels are the
-- reply queues' channels (computed from the picked rows), each woken once. A reply
-- carries its command's trace context (NULL unless tracing is on), as operator_resolve's.
WITH input AS (
    SELECT * FROM unnest(%(domains)b::text[], %(command_ids)b::uuid[]) AS t(domain, command_id)
), cmd AS (
    UPDATE {schema}.commands c
    SET status = %(status)s, result = %(result)s::jsonb, updated_at = now()
    FROM input i
    WHERE c.command_id = ANY (%(command_ids)b::uuid[])
      AND c.command_id = i.command_id AND c.domain = i.domain
      AND c.status = 'IN_TROUBLESHOOTING_QUEUE'
    RETURNING c.domain, c.command_id, c.command_type, c.correlation_id, c.reply_to, c.result,
              c.trace_context
), rep AS (
    INSERT INTO {schema}.replies
        (queue, domain, command_id, command_type, correlation_id, outcome, result,
         error_code, error_message, trace_context)
    SELECT reply_to, domain, command_id, command_type, correlation_id, %(outcome)s, result,
           %(error_code)s, %(reply_message)s, trace_context
    FROM cmd
    WHERE reply_to IS NOT NULL
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, %(event_type)s,
           jsonb_build_object('operator', %(operator)s::text, 'reason', %(reason)s::text)
    FROM cmd
)
SELECT cmd.domain, cmd.command_id,
       (SELECT count(pg_notify(ch, '')) FROM unnest(%(channels)b::text[]) AS ch) AS notified
FROM cmd
