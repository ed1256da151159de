-- commandbus schema, version 8: retention, periodic commands and paused domains.
-- {schema} is the schema name.

-- Retention (commandbus.Pruner, run by workers): finished commands outside batches, by the
-- time they finished, so a prune statement walks only rows it may delete (commands of a
-- batch go with their batch, found through commands_batch_idx). On a large existing table
-- build it first with CREATE INDEX CONCURRENTLY under the same name (docs/operations.md).
CREATE INDEX IF NOT EXISTS commands_finished_idx ON {schema}.commands (updated_at)
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED') AND batch_id IS NULL;
-- Finished processes by the time they finished (completed_at is set only then).
CREATE INDEX IF NOT EXISTS processes_finished_idx ON {schema}.processes (completed_at)
    WHERE completed_at IS NOT NULL;

-- Periodic commands (commandbus.Scheduler): one row per schedule, written by the
-- schedulers. Claiming a tick is an update of last_tick in the transaction that sends its
-- command, so each tick is sent once however many schedulers run. The other columns
-- describe the schedule for `commandbus schedules`.
CREATE TABLE {schema}.schedules (
    name            text        PRIMARY KEY,
    -- "cron <expression> <time zone>" or "every <seconds>s": a change of the schedule
    -- restarts it at its next tick.
    spec            text        NOT NULL,
    domain          text        NOT NULL,
    command_type    text        NOT NULL,
    -- The latest tick sent (or passed over); NULL never.
    last_tick       timestamptz NOT NULL,
    -- The command sent for last_tick; NULL when that tick was passed over.
    last_command_id uuid,
    next_tick       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Paused domains: workers lease nothing of a domain listed here (dequeue.sql, rescue.sql).
CREATE TABLE {schema}.paused_domains (
    domain    text        PRIMARY KEY,
    operator  text,
    reason    text,
    paused_at timestamptz NOT NULL DEFAULT now()
);
