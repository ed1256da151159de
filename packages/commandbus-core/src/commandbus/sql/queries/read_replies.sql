-- read_replies: lease up to `limit` visible replies of one reply queue.
WITH picked AS (
    SELECT msg_id
    FROM {schema}.replies
    WHERE queue = %(queue)s AND vt <= now()
    ORDER BY vt, msg_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.replies r
SET vt = now() + make_interval(secs => %(lease)s), read_ct = r.read_ct + 1
FROM picked
WHERE r.msg_id = picked.msg_id
RETURNING r.msg_id, r.queue, r.domain, r.command_id, r.command_type, r.correlation_id,
          r.outcome, r.result, r.error_code, r.error_message, r.read_ct, r.enqueued_at,
          r.trace_context
