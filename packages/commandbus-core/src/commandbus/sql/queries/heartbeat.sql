-- heartbeat: a registered worker or router is alive, with this many commands in flight.
-- No row back: the row is gone (deleted by an operator, or never written), register again.
UPDATE {schema}.workers
SET heartbeat_at = now(), in_flight = %(in_flight)s
WHERE id = %(id)s
RETURNING id
