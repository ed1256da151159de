-- lease_settings: run before dequeue.sql in the same transaction (one round trip, both
-- statements pipelined), for that transaction only:
-- * no bitmap scans: under churn the queue's statistics go stale, and the planner then
--   fetched every visible message and sorted them (O(queue) per lease) instead of
--   walking queue_dequeue_idx in order and stopping after `limit` rows;
-- * the lease commits without waiting for its WAL flush: a lease lost in a server crash
--   only means the message is leased again, which at-least-once delivery allows.
--   Outcomes (finish.sql) stay durable.
SELECT set_config('enable_bitmapscan', 'off', true),
       set_config('synchronous_commit', 'off', true)
