-- schedule_register: a scheduler starts serving a schedule; returns its last tick. A new
-- schedule, or one whose definition changed, starts at `last_tick` (the latest tick up to
-- now, not sent): it runs from its next tick on. Otherwise the stored state stands. (No
-- row back only when another scheduler registered it concurrently: ask again.)
WITH up AS (
    INSERT INTO {schema}.schedules AS s
        (name, spec, domain, command_type, last_tick, next_tick)
    VALUES (%(name)s, %(spec)s, %(domain)s, %(command_type)s, %(last_tick)s, %(next_tick)s)
    ON CONFLICT (name) DO UPDATE
    SET spec = excluded.spec, domain = excluded.domain, command_type = excluded.command_type,
        last_tick = excluded.last_tick, last_command_id = NULL, next_tick = excluded.next_tick,
        updated_at = now()
    WHERE s.spec IS DISTINCT FROM excluded.spec
       OR s.domain IS DISTINCT FROM excluded.domain
       OR s.command_type IS DISTINCT FROM excluded.command_type
    RETURNING last_tick
)
SELECT last_tick FROM up
UNION ALL
SELECT last_tick FROM {schema}.schedules
WHERE name = %(name)s AND NOT EXISTS (SELECT 1 FROM up)
