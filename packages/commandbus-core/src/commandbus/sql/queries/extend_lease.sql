-- extend_lease: push a leased command's lease out, only if the lease is still ours.
UPDATE {schema}.commands
SET vt = now() + make_interval(secs => %(seconds)s)
WHERE command_id = %(command_id)s AND domain = %(domain)s
  AND lease_id = %(lease_id)s AND worker = %(worker)s AND status = 'IN_PROGRESS'
RETURNING vt
