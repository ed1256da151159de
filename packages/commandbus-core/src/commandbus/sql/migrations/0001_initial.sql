-- commandbus schema, version 1: commands, their queue, reply queues and the audit trail.
-- Apply with `commandbus migrate`, or render with `commandbus migrate --print-sql` for
-- Flyway/Alembic/Django. {schema} is the schema name (default "commandbus").

-- The system of record: one row per command, ever.
CREATE TABLE {schema}.commands (
    domain               text        NOT NULL,
    command_id           uuid        NOT NULL,
    command_type         text        NOT NULL,
    status               text        NOT NULL,
    attempts             integer     NOT NULL DEFAULT 0,
    max_attempts         integer     NOT NULL,
    data                 jsonb       NOT NULL,
    correlation_id       uuid,
    reply_to             text,
    batch_id             uuid,
    result               jsonb,
    last_error_type      text,
    last_error_code      text,
    last_error_message   text,
    last_error_traceback text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, command_id)
) WITH (fillfactor = 85);

CREATE INDEX commands_created_idx ON {schema}.commands (created_at DESC);
CREATE INDEX commands_batch_idx ON {schema}.commands (batch_id, status)
    WHERE batch_id IS NOT NULL;
CREATE INDEX commands_troubleshooting_idx ON {schema}.commands (domain, updated_at)
    WHERE status = 'IN_TROUBLESHOOTING_QUEUE';

-- Deliverable messages. A row lives from send until completion; the lease is `vt`
-- (visible-after time). Rows churn fast: small fillfactor and eager autovacuum keep
-- the table and its index small (see docs/operations.md).
CREATE TABLE {schema}.queue (
    msg_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain      text        NOT NULL,
    command_id  uuid        NOT NULL,
    vt          timestamptz NOT NULL DEFAULT now(),
    read_ct     integer     NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now()
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_cost_delay = 0
);

-- Dequeue is an index range scan: the next visible messages of one domain.
CREATE INDEX queue_dequeue_idx ON {schema}.queue (domain, vt, msg_id);
CREATE INDEX queue_command_idx ON {schema}.queue (command_id);

-- Replies, one logical queue per `reply_to` name.
CREATE TABLE {schema}.replies (
    msg_id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue          text        NOT NULL,
    domain         text        NOT NULL,
    command_id     uuid        NOT NULL,
    command_type   text        NOT NULL,
    correlation_id uuid,
    outcome        text        NOT NULL,
    result         jsonb,
    error_code     text,
    error_message  text,
    vt             timestamptz NOT NULL DEFAULT now(),
    read_ct        integer     NOT NULL DEFAULT 0,
    enqueued_at    timestamptz NOT NULL DEFAULT now()
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_cost_delay = 0
);

CREATE INDEX replies_dequeue_idx ON {schema}.replies (queue, vt, msg_id);

-- Append-only audit trail: one row per state change, written in the change's transaction.
CREATE TABLE {schema}.audit (
    audit_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain     text        NOT NULL,
    command_id uuid        NOT NULL,
    event_type text        NOT NULL,
    details    jsonb       NOT NULL DEFAULT jsonb_build_object(),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX audit_command_idx ON {schema}.audit (command_id, audit_id);
