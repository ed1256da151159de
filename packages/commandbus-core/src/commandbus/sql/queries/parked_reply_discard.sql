-- parked_reply_discard: an operator drops a parked reply for good.
DELETE FROM {schema}.parked_replies
WHERE parked_id = %(parked_id)s
RETURNING parked_id
