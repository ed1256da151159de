-- extend_lease: push a leased message's visibility out, only if the lease is still ours.
UPDATE {schema}.queue
SET vt = now() + make_interval(secs => %(seconds)s)
WHERE msg_id = %(msg_id)s AND read_ct = %(read_ct)s
RETURNING vt
