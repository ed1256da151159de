-- lease_settings: run before dequeue.sql or rescue.sql in the same transaction (one round
-- trip: both in one pipeline sync).
-- No bitmap scans, for that transaction only: under churn the statistics go stale, and
-- the planner then fetched every deliverable command and sorted them (O(backlog) per
-- lease) instead of walking commands_pending_idx in order and stopping after `limit` rows.
-- The lease does not wait for its WAL flush: a lease lost in a server crash only makes
-- its command deliverable again (at least once), and its owner's outcome is refused,
-- since outcomes check the lease id and the worker (a lease id handed out again after a
-- crash belongs to another worker). Outcomes themselves stay durable.
SELECT set_config('enable_bitmapscan', 'off', true),
       set_config('synchronous_commit', 'off', true)
