-- dequeue: lease up to `limit` visible messages of one domain and mark their commands
-- IN_PROGRESS, with a RECEIVED audit event each. Attempts are counted here, at lease time,
-- so a message that kills its worker still uses up its attempts.
-- `= ANY (ARRAY(...))` pins index lookups whatever the statistics say: a join here once
-- degraded into a scan of every command of the domain.
-- Runs after lease_settings.sql, in the same transaction.
WITH picked AS (
    SELECT msg_id
    FROM {schema}.queue
    WHERE domain = %(domain)s AND vt <= now()
    ORDER BY vt, msg_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE {schema}.queue q
    SET vt = now() + make_interval(secs => %(lease)s), read_ct = q.read_ct + 1
    WHERE q.msg_id = ANY (ARRAY(SELECT msg_id FROM picked))
    RETURNING q.msg_id, q.command_id, q.read_ct
), cmd AS (
    UPDATE {schema}.commands c
    SET status = 'IN_PROGRESS', attempts = c.attempts + 1, updated_at = now()
    FROM leased
    WHERE c.domain = %(domain)s
      AND c.command_id = ANY (ARRAY(SELECT command_id FROM leased))
      AND c.command_id = leased.command_id
      AND c.status IN ('PENDING', 'IN_PROGRESS')
    RETURNING leased.msg_id, leased.read_ct, c.command_id, c.command_type, c.data,
              c.correlation_id, c.reply_to, c.batch_id, c.created_at, c.attempts,
              c.max_attempts
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT %(domain)s, command_id, 'RECEIVED',
           jsonb_build_object('msg_id', msg_id, 'attempt', attempts, 'worker', %(worker)s::text)
    FROM cmd
)
SELECT * FROM cmd ORDER BY msg_id
