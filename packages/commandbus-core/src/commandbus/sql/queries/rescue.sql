-- rescue: lease one command whose lease expired without an outcome (its worker died, or
-- its handler overran the lease), for its worker to run alone. The expired lease is kept
-- as a stored RECEIVED event. It counts against max_attempts only if it, too, ran alone:
-- a command merely leased together with one that killed the worker is not to blame
-- (`forgiven` counts such leases; attempts still counts every lease).
-- Runs after lease_settings.sql, in the same transaction.
WITH picked AS (
    SELECT command_id, vt AS old_vt, lease_id AS old_lease_id, leased_at AS old_leased_at,
           worker AS old_worker, attempts AS old_attempts, lease_solo AS old_solo
    FROM {schema}.commands
    WHERE domain = %(domain)s AND status = 'IN_PROGRESS' AND vt <= now()
      AND NOT EXISTS (SELECT 1 FROM {schema}.paused_domains pd WHERE pd.domain = %(domain)s)
    ORDER BY vt
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE {schema}.commands c
    SET attempts = c.attempts + 1,
        forgiven = CASE WHEN p.old_solo THEN c.forgiven ELSE c.forgiven + 1 END,
        vt = now() + make_interval(secs => %(lease)s),
        lease_id = nextval('{schema}.event_ids'), leased_at = now(), worker = %(worker)s,
        lease_solo = true, updated_at = now()
    FROM picked p
    WHERE c.command_id = p.command_id AND c.domain = %(domain)s
    RETURNING c.msg_id, c.lease_id, c.command_id, c.command_type, c.data,
              c.correlation_id, c.reply_to, c.batch_id, c.created_at, c.attempts,
              c.max_attempts, c.forgiven, c.priority, c.trace_context,
              c.cancel_requested
), aud AS (
    INSERT INTO {schema}.audit (audit_id, domain, command_id, event_type, details, created_at)
    SELECT p.old_lease_id, %(domain)s, p.command_id, 'RECEIVED',
           jsonb_build_object('msg_id', l.msg_id, 'attempt', p.old_attempts,
                              'worker', p.old_worker),
           p.old_leased_at
    FROM picked p JOIN leased l USING (command_id)
    WHERE p.old_lease_id IS NOT NULL
)
-- Deliverable again since its lease expired (ready_for: see dequeue.sql).
SELECT leased.*, false AS expired, extract(epoch FROM now() - p.old_vt)::float8 AS ready_for
FROM leased JOIN picked p USING (command_id)
