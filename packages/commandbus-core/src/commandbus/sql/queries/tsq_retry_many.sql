-- tsq_retry_many: operator_retry for many commands locked by tsq_pick in this
-- transaction: back to PENDING with a fresh attempt budget, one audit event each, and
-- one wake-up per domain (the channels parameter, from the picked rows).
-- The arrays travel in binary; lookups use `= ANY (array)` so plans stay index lookups.
WITH input AS (
    SELECT * FROM unnest(%(domains)b::text[], %(command_ids)b::uuid[]) AS t(domain, command_id)
), cmd AS (
    UPDATE {schema}.commands c
    SET status = 'PENDING', attempts = 0, forgiven = 0, vt = now(), lease_id = NULL,
        cancel_requested = NULL,
        updated_at = now()
    FROM input i
    WHERE c.command_id = ANY (%(command_ids)b::uuid[])
      AND c.command_id = i.command_id AND c.domain = i.domain
      AND c.status = 'IN_TROUBLESHOOTING_QUEUE'
    RETURNING c.domain, c.command_id, c.msg_id
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, 'OPERATOR_RETRY',
           jsonb_build_object('operator', %(operator)s::text, 'reason', %(reason)s::text,
                              'msg_id', msg_id)
    FROM cmd
)
SELECT cmd.domain, cmd.command_id,
       (SELECT count(pg_notify(ch, '')) FROM unnest(%(channels)b::text[]) AS ch) AS notified
FROM cmd
