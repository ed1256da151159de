-- release_reply: give a leased reply back, visible again after `delay` seconds.
UPDATE {schema}.replies
SET vt = now() + make_interval(secs => %(delay)s)
WHERE msg_id = %(msg_id)s AND read_ct = %(read_ct)s
RETURNING msg_id
