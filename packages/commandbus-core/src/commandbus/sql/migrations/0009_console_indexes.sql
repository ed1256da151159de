-- commandbus schema, version 9: what the operator console (commandbus-web) searches by.
-- {schema} is the schema name.
--
-- Commands by correlation id (a process's commands carry its id): without this index a
-- search by correlation id reads the whole commands table. Partial: commands sent without
-- one cost nothing on send.
CREATE INDEX commands_correlation_idx ON {schema}.commands (correlation_id)
    WHERE correlation_id IS NOT NULL;

-- The newest batches and processes of every domain, a page at a time (the existing
-- indexes lead with the domain). Both tables take one row per batch or process: cheap.
CREATE INDEX batches_created_idx ON {schema}.batches (created_at DESC, batch_id DESC);
CREATE INDEX processes_created_idx ON {schema}.processes (created_at DESC, process_id DESC);
