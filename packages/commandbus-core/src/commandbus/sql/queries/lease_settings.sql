-- lease_settings: run before dequeue.sql or rescue.sql in the same transaction (one round
-- trip: both in one pipeline sync). No bitmap scans, for that transaction only: under
-- churn the statistics go stale, and the planner then fetched every deliverable command
-- and sorted them (O(backlog) per lease) instead of walking commands_pending_idx in order
-- and stopping after `limit` rows.
-- (The lease commits durably: its lease_id is the lease's identity.)
SELECT set_config('enable_bitmapscan', 'off', true)
