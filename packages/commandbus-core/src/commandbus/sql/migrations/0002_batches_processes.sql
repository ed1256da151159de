-- commandbus schema, version 2: batches, process managers (sagas) and parked replies.
-- {schema} is the schema name (default "commandbus").

-- A batch is a named group of commands sent in one transaction. Its counters are NOT
-- stored: they are counted from the commands (index commands_batch_idx on batch_id,
-- status), so completing a command never touches a shared row, and operator actions
-- (retry, cancel, complete) are reflected by construction.
CREATE TABLE {schema}.batches (
    batch_id     uuid        PRIMARY KEY,
    domain       text        NOT NULL,
    name         text,
    custom_data  jsonb,
    total        integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Completion time, stored by the watcher that claims the batch's on_complete
    -- callback (UPDATE ... WHERE completed_at IS NULL); readers derive it otherwise.
    completed_at timestamptz
);

CREATE INDEX batches_domain_idx ON {schema}.batches (domain, created_at DESC, batch_id);

-- The one definition of a batch's counters and status. A terminal batch (nothing
-- pending, in progress or in the troubleshooting queue) can never change again:
-- operator actions apply only to commands in the troubleshooting queue.
CREATE VIEW {schema}.batch_summary AS
SELECT s.batch_id, s.domain, s.name, s.custom_data, s.total,
       s.pending, s.in_progress, s.completed, s.failed, s.canceled, s.in_troubleshooting,
       CASE
           WHEN s.pending + s.in_progress + s.in_troubleshooting > 0 THEN
               CASE WHEN s.pending = s.total THEN 'PENDING' ELSE 'IN_PROGRESS' END
           WHEN s.failed + s.canceled = 0 THEN 'COMPLETED'
           ELSE 'COMPLETED_WITH_FAILURES'
       END AS status,
       s.created_at,
       CASE
           WHEN s.pending + s.in_progress + s.in_troubleshooting > 0 THEN NULL
           ELSE COALESCE(
               s.completed_at,
               (SELECT max(c.updated_at) FROM {schema}.commands c WHERE c.batch_id = s.batch_id)
           )
       END AS completed_at,
       s.completed_at IS NOT NULL AS claimed
FROM (
    SELECT b.batch_id, b.domain, b.name, b.custom_data, b.total, b.created_at,
           b.completed_at, n.*
    FROM {schema}.batches b
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE c.status = 'PENDING')::int AS pending,
               count(*) FILTER (WHERE c.status = 'IN_PROGRESS')::int AS in_progress,
               count(*) FILTER (WHERE c.status = 'COMPLETED')::int AS completed,
               count(*) FILTER (WHERE c.status = 'FAILED')::int AS failed,
               count(*) FILTER (WHERE c.status = 'CANCELED')::int AS canceled,
               count(*) FILTER (WHERE c.status = 'IN_TROUBLESHOOTING_QUEUE')::int
                   AS in_troubleshooting
        FROM {schema}.commands c
        WHERE c.batch_id = b.batch_id
    ) n
) s;

-- A process (saga): a multi-step workflow whose state advances when the reply to its
-- current command arrives. Exactly one command is outstanding at a time.
CREATE TABLE {schema}.processes (
    process_id             uuid        PRIMARY KEY,
    domain                 text        NOT NULL,
    process_type           text        NOT NULL,
    status                 text        NOT NULL,
    current_step           text,
    current_command_domain text,
    current_command_id     uuid,
    state                  jsonb       NOT NULL,
    -- Steps whose command succeeded, in order (what compensation undoes, in reverse).
    completed_steps        jsonb       NOT NULL DEFAULT jsonb_build_array(),
    -- Compensation steps still to run after the current one.
    compensation_steps     jsonb       NOT NULL DEFAULT jsonb_build_array(),
    error_code             text,
    error_message          text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    completed_at           timestamptz
);

CREATE INDEX processes_domain_idx ON {schema}.processes (domain, created_at DESC, process_id);
CREATE INDEX processes_status_idx ON {schema}.processes (domain, status, created_at DESC);

-- Replies the router could not apply (unknown process or type, handling that kept
-- failing): kept for operators instead of being retried forever.
CREATE TABLE {schema}.parked_replies (
    parked_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue          text        NOT NULL,
    domain         text        NOT NULL,
    command_id     uuid        NOT NULL,
    command_type   text        NOT NULL,
    correlation_id uuid,
    outcome        text        NOT NULL,
    result         jsonb,
    error_code     text,
    error_message  text,
    read_ct        integer     NOT NULL,
    enqueued_at    timestamptz,
    reason_code    text        NOT NULL,
    reason         text        NOT NULL,
    traceback      text,
    parked_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX parked_replies_queue_idx ON {schema}.parked_replies (queue, parked_id);
CREATE INDEX parked_replies_correlation_idx ON {schema}.parked_replies (correlation_id, command_id);

-- The one definition of a process's reported status: a process waiting for a reply
-- whose command sits in the troubleshooting queue (or whose reply was parked) is
-- WAITING_FOR_TSQ. Derived, so the worker and operators need no knowledge of processes.
CREATE VIEW {schema}.process_summary AS
SELECT p.process_id, p.domain, p.process_type,
       CASE
           WHEN p.status = 'WAITING_FOR_REPLY'
                AND (c.status = 'IN_TROUBLESHOOTING_QUEUE'
                     OR EXISTS (SELECT 1 FROM {schema}.parked_replies r
                                WHERE r.correlation_id = p.process_id
                                  AND r.command_id = p.current_command_id))
           THEN 'WAITING_FOR_TSQ'
           ELSE p.status
       END AS status,
       p.current_step, p.current_command_domain, p.current_command_id,
       c.status AS current_command_status, p.state, p.completed_steps,
       p.compensation_steps, p.error_code, p.error_message, p.created_at, p.updated_at,
       p.completed_at
FROM {schema}.processes p
LEFT JOIN {schema}.commands c
       ON c.domain = p.current_command_domain AND c.command_id = p.current_command_id;

-- Every command a process sent, with the reply it got (filled in when it arrives), and
-- every reply it did not apply (stale, duplicate, for a finished process, parked).
CREATE TABLE {schema}.process_audit (
    seq            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process_id     uuid        NOT NULL,
    entry_type     text        NOT NULL,
    step           text,
    command_domain text,
    command_id     uuid,
    command_type   text,
    command_data   jsonb,
    sent_at        timestamptz,
    reply_outcome  text,
    reply_data     jsonb,
    error_code     text,
    error_message  text,
    received_at    timestamptz,
    note           text
);

CREATE INDEX process_audit_process_idx ON {schema}.process_audit (process_id, seq);
