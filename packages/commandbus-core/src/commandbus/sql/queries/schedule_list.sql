-- schedule_list: every schedule the schedulers serve (or served), by name.
SELECT name, spec, domain, command_type, last_tick, last_command_id, next_tick, updated_at
FROM {schema}.schedules
ORDER BY name
