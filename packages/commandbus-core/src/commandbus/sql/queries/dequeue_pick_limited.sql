-- dequeue_pick_limited: dequeue_pick.sql for a domain with concurrency limits per
-- command type (concurrency_limits, migration 11). Runs after limits_lock.sql in the same
-- transaction, so the running commands it counts include every lease committed before.
-- Commands of a type with no free place are passed over (the index walk still steps over
-- them: a deep backlog of a type at its limit costs every dequeue of the domain that
-- walk); a limited type then keeps only as many commands as it has free places.
free AS (
    -- Places left per limited type: its limit minus its running commands, counted
    -- with this statement's snapshot, taken after limits_lock.sql.
    SELECT l.command_type,
           l.max_running - (SELECT count(*) FROM {schema}.commands r
                            WHERE r.domain = l.domain AND r.status = 'IN_PROGRESS'
                              AND r.command_type = l.command_type) AS places
    FROM {schema}.concurrency_limits l
    WHERE l.domain = %(domain)s
), candidates AS (
    SELECT x.command_id, x.command_type, p.priority, x.vt, x.msg_id,
           row_number() OVER (PARTITION BY x.command_type
                              ORDER BY p.priority, x.vt, x.msg_id) AS nth
    FROM generate_series(0, 9) AS p(priority)
    CROSS JOIN LATERAL (
        SELECT c.command_id, c.command_type, c.vt, c.msg_id
        FROM {schema}.commands c
        WHERE c.domain = %(domain)s AND c.status = 'PENDING'
          AND c.priority = p.priority AND c.vt <= now()
          -- A paused domain leases nothing (one primary-key probe per statement).
          AND NOT EXISTS (SELECT 1 FROM {schema}.paused_domains pd WHERE pd.domain = %(domain)s)
          AND NOT EXISTS (SELECT 1 FROM free f
                          WHERE f.command_type = c.command_type AND f.places <= 0)
        ORDER BY c.vt, c.msg_id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) x
), picked AS (
    -- A limited type takes at most its free places; other types as many as come.
    SELECT k.command_id, k.vt
    FROM candidates k
    LEFT JOIN free f ON f.command_type = k.command_type
    WHERE f.places IS NULL OR k.nth <= f.places
    ORDER BY k.priority, k.vt, k.msg_id
    LIMIT %(limit)s
)
