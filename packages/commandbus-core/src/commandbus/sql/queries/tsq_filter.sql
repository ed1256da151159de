-- tsq_filter: the troubleshooting-queue predicate shared by tsq_find, tsq_pick and
-- tsq_summary (a fragment, not a statement: it fills their "match" placeholder). Commands
-- alias "c"; every criterion is a parameter, NULL matches everything. Parked time is
-- updated_at, which nothing changes while a command waits in the queue.
c.status = 'IN_TROUBLESHOOTING_QUEUE'
  AND (%(domain)s::text IS NULL OR c.domain = %(domain)s)
  AND (%(command_type)s::text IS NULL OR c.command_type = %(command_type)s)
  AND (%(error_type)s::text IS NULL OR c.last_error_type = %(error_type)s)
  AND (%(error_code)s::text IS NULL OR c.last_error_code = %(error_code)s)
  AND (%(parked_after)s::timestamptz IS NULL OR c.updated_at >= %(parked_after)s)
  AND (%(parked_before)s::timestamptz IS NULL OR c.updated_at < %(parked_before)s)
  AND (%(command_ids)s::uuid[] IS NULL OR c.command_id = ANY (%(command_ids)s::uuid[]))
