-- commandbus schema, version 9: what the operator console (commandbus-web) searches by.
-- {schema} is the schema name.
--
-- Commands by correlation id (a process's commands carry its id): without this index a
-- search by correlation id reads the whole commands table. Partial: commands sent without
-- one cost nothing on send.
CREATE INDEX commands_correlation_idx ON {schema}.commands (correlation_id)
    WHERE correlation_id IS NOT NULL;
