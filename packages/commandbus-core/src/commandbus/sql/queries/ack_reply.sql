-- ack_reply: a reply is handled; remove it if our lease is still current.
DELETE FROM {schema}.replies
WHERE msg_id = %(msg_id)s AND read_ct = %(read_ct)s
RETURNING msg_id
