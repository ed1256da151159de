-- commandbus schema, version 11: concurrency limits per command type, across every worker
-- process of a domain. {schema} is the schema name.
--
-- A row caps how many commands of (domain, command_type) may be IN_PROGRESS at once,
-- whichever workers run them. Workers whose registry declares a limit
-- (registry.handler(..., max_running=N)) write it here at start. A domain with no row
-- dequeues exactly as before; one with rows dequeues with dequeue_pick_limited.sql, after
-- locking its rows (limits_lock.sql), so concurrent dequeues cannot both fill the last
-- free place.
CREATE TABLE {schema}.concurrency_limits (
    domain       text    NOT NULL,
    command_type text    NOT NULL,
    max_running  integer NOT NULL CHECK (max_running > 0),
    PRIMARY KEY (domain, command_type)
);
