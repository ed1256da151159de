-- dequeue: lease up to `limit` deliverable commands of one domain: smaller priority
-- first, then visibility time, then send order. Attempts are counted here, at lease time.
-- One bounded index range per priority (commands_pending_idx): commands scheduled for
-- later are never walked over, however many there are.
-- `expired` tells whether a lease of the domain expired without an outcome: the worker
-- then takes that command alone (rescue.sql), so only a command that kills its worker
-- uses up its attempts, not the commands leased with it. `alone`: the worker has nothing
-- else in flight, so one command leased now runs alone (lease_solo, see rescue.sql).
-- Runs after lease_settings.sql, in the same transaction. The `picked` CTE that chooses
-- the commands is a fragment: dequeue_pick.sql, or dequeue_pick_limited.sql for a domain
-- with concurrency limits.
WITH {picked}, leased AS (
    UPDATE {schema}.commands c
    SET status = 'IN_PROGRESS', attempts = c.attempts + 1,
        vt = now() + make_interval(secs => %(lease)s),
        lease_id = nextval('{schema}.event_ids'), leased_at = now(), worker = %(worker)s,
        lease_solo = %(alone)s AND (SELECT count(*) FROM picked) = 1, updated_at = now()
    WHERE c.command_id = ANY (ARRAY(SELECT command_id FROM picked))
      AND c.domain = %(domain)s
    RETURNING c.msg_id, c.lease_id, c.command_id, c.command_type, c.data,
              c.correlation_id, c.reply_to, c.batch_id, c.created_at, c.attempts,
              c.max_attempts, c.forgiven, c.priority, c.trace_context,
              c.cancel_requested
)
-- One row even when nothing was leased (its lease columns NULL), to carry `expired`.
-- `ready_for`: seconds each command had been deliverable (since its send, its scheduled
-- time, its retry's due time or an operator's retry) when leased: send-to-start latency.
SELECT leased.*, e.expired, extract(epoch FROM now() - picked.vt)::float8 AS ready_for
FROM (
    SELECT EXISTS (SELECT 1 FROM {schema}.commands x
                   WHERE x.domain = %(domain)s AND x.status = 'IN_PROGRESS'
                     AND x.vt <= now()
                     AND NOT EXISTS (SELECT 1 FROM {schema}.paused_domains pd
                                     WHERE pd.domain = %(domain)s)) AS expired
) e
LEFT JOIN leased ON true
LEFT JOIN picked ON picked.command_id = leased.command_id
ORDER BY leased.priority, leased.msg_id
