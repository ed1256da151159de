-- limits_lock: run before dequeue_pick_limited.sql in the same transaction. Dequeues of a
-- domain with limits take turns here; the dequeue that follows, a statement of its own,
-- then counts the running commands with a snapshot taken after the lock, so it sees
-- every lease committed by the dequeue before it. In command_type order, as
-- limits_declare.sql writes them: no two workers lock them in opposite orders.
SELECT 1 FROM {schema}.concurrency_limits WHERE domain = %(domain)s
ORDER BY command_type
FOR UPDATE
