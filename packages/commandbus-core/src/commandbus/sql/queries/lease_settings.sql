-- lease_settings: run before dequeue.sql in the same transaction (one round trip: both in
-- one pipeline sync). No bitmap scans, for that transaction only: under churn the queue's
-- statistics go stale, and the planner then fetched every visible message and sorted
-- them (O(queue) per lease) instead of walking queue_dequeue_idx in order and stopping
-- after `limit` rows.
-- (The lease commits durably: its (msg_id, read_ct) is the lease's identity, and a lease
-- lost in a server crash would let read_ct repeat, so two workers could own one message.)
SELECT set_config('enable_bitmapscan', 'off', true)
