-- schedule_claim: take one tick of a schedule, in the transaction that sends its command.
-- A row back means this scheduler claimed it; none, that another one did (it holds the
-- row until its send commits, then this statement finds last_tick moved on), or that the
-- schedule's definition changed meanwhile (register it again).
UPDATE {schema}.schedules
SET last_tick = %(tick)s, last_command_id = %(command_id)s, next_tick = %(next_tick)s,
    updated_at = now()
WHERE name = %(name)s AND spec = %(spec)s AND last_tick < %(tick)s
RETURNING name
