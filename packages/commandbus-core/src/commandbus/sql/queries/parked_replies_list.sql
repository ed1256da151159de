-- parked_replies_list: replies set aside by routers, oldest first; NULL queue = all queues.
SELECT parked_id, queue, domain, command_id, command_type, correlation_id, outcome, result,
       error_code, error_message, read_ct, enqueued_at, reason_code, reason, traceback,
       parked_at
FROM {schema}.parked_replies
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY parked_id
LIMIT %(limit)s OFFSET %(offset)s
