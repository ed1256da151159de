-- dequeue_pick: the `picked` CTE of dequeue.sql, up to `limit` deliverable commands: one
-- bounded walk of commands_pending_idx per priority, smaller priority first, then
-- visibility time, then send order; locked, skipping rows other dequeues hold. `vt` is
-- when each became deliverable (dequeue.sql reports how long it waited).
picked AS (
    SELECT x.command_id, x.vt
    FROM generate_series(0, 9) AS p(priority)
    CROSS JOIN LATERAL (
        SELECT c.command_id, c.vt, c.msg_id
        FROM {schema}.commands c
        WHERE c.domain = %(domain)s AND c.status = 'PENDING'
          AND c.priority = p.priority AND c.vt <= now()
          -- A paused domain leases nothing (one primary-key probe per statement).
          AND NOT EXISTS (SELECT 1 FROM {schema}.paused_domains pd WHERE pd.domain = %(domain)s)
        ORDER BY c.vt, c.msg_id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) x
    ORDER BY p.priority, x.vt, x.msg_id
    LIMIT %(limit)s
)
