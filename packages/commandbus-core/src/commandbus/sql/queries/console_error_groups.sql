-- console_error_groups: the troubleshooting queue's error groups, over the newest
-- %(scan)s parked commands matching the filter only: a bounded read however many wait
-- (commands_parked_keyset_idx read backwards, as tsq_find does). When the scan is full
-- the caller reports its counts as "at least". Commands alias "c" (the match fragment).
WITH newest AS (
    SELECT c.domain, c.command_type, c.last_error_type, c.last_error_code,
           c.last_error_message, c.updated_at
    FROM {schema}.commands c
    WHERE {match}
    ORDER BY c.updated_at DESC, c.domain DESC, c.command_id DESC
    LIMIT %(scan)s
)
SELECT domain, command_type, last_error_type AS error_type, last_error_code AS error_code,
       count(*)::int AS count, min(updated_at) AS oldest, max(updated_at) AS newest,
       (array_agg(last_error_message ORDER BY updated_at DESC))[1] AS sample_message
FROM newest
GROUP BY domain, command_type, last_error_type, last_error_code
ORDER BY count(*) DESC, domain, command_type, last_error_type, last_error_code
