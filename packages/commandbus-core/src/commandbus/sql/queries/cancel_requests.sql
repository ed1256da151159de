-- cancel_requests: the leases of one worker whose command an operator asked to cancel.
-- Walks only the domain's running commands (commands_leased_idx).
SELECT lease_id, cancel_requested
FROM {schema}.commands
WHERE domain = %(domain)s AND status = 'IN_PROGRESS' AND worker = %(worker)s
  AND cancel_requested IS NOT NULL AND lease_id = ANY (%(lease_ids)s::bigint[])
