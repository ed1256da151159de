-- commandbus schema, version 4: the command record is the queue, and the audit trail
-- stores only what the command row cannot hold. {schema} is the schema name.
--
-- Before: a send wrote three rows (command, queue message, SENT audit event), a lease
-- updated two tables and inserted a RECEIVED event, an outcome deleted or updated the
-- message, updated the command and inserted an event. After: a send inserts one row, a
-- lease updates it, an outcome updates it; an audit row is written only for what the
-- command row cannot hold (a failed attempt, a retry, troubleshooting, operator actions,
-- a lease that expired). docs/design.md lists what is derived and what is stored.
--
-- Nothing is lost: every queued message (pending, leased, waiting for a retry) moves
-- onto its command row with its visibility time; every audit event stays, except SENT
-- events, which become the command row's msg_id and created_at and are derived again.

-- One sequence numbers sends (msg_id), leases (lease_id) and audit rows (audit_id), so
-- that stored and derived audit events sort in the order they happened. It steps by 2:
-- the value after a lease's id (lease_id + 1) is never handed out, and is the id of the
-- COMPLETED event derived from that lease.
CREATE SEQUENCE {schema}.event_ids INCREMENT BY 2 MINVALUE 1;
SELECT setval(
    '{schema}.event_ids',
    greatest(
        (SELECT max(audit_id) FROM {schema}.audit),
        (SELECT max(msg_id) FROM {schema}.queue),
        1
    )
);

ALTER TABLE {schema}.commands
    ADD COLUMN msg_id     bigint,
    ADD COLUMN priority   integer     NOT NULL DEFAULT 0,
    -- PENDING: deliverable from this time on; IN_PROGRESS: the lease expires then.
    ADD COLUMN vt         timestamptz,
    -- The current lease (NULL once it ended in a stored audit event), its time and owner.
    ADD COLUMN lease_id   bigint,
    ADD COLUMN leased_at  timestamptz,
    ADD COLUMN worker     text,
    -- The current lease was taken alone by its worker (after an earlier lease expired):
    -- if it expires too, the command itself is to blame.
    ADD COLUMN lease_solo boolean     NOT NULL DEFAULT false,
    -- Leases that expired without an outcome while other commands ran in the same worker
    -- (which may have been the one that killed it): not counted against max_attempts.
    ADD COLUMN forgiven   integer     NOT NULL DEFAULT 0;

-- The SENT event becomes the row's msg_id (its audit_id, so the trail keeps its order).
UPDATE {schema}.commands c
SET msg_id = a.audit_id
FROM {schema}.audit a
WHERE a.event_type = 'SENT' AND a.domain = c.domain AND a.command_id = c.command_id;
UPDATE {schema}.commands SET msg_id = nextval('{schema}.event_ids') WHERE msg_id IS NULL;
DELETE FROM {schema}.audit WHERE event_type = 'SENT';

-- Queued messages move onto their commands: same visibility, so a message leased before
-- the upgrade is redelivered when its lease expires, and a scheduled retry stays
-- scheduled. (Their RECEIVED events are stored rows already: lease_id stays NULL.)
UPDATE {schema}.commands c
SET vt = q.vt
FROM {schema}.queue q
WHERE q.domain = c.domain AND q.command_id = c.command_id;
-- A PENDING or IN_PROGRESS command without a message could not be delivered before
-- either; deliver it now rather than strand it.
UPDATE {schema}.commands SET vt = now()
WHERE vt IS NULL AND status IN ('PENDING', 'IN_PROGRESS');
-- An IN_PROGRESS command whose lease expired is delivered again, alone (see lease_solo).
DROP TABLE {schema}.queue;

ALTER TABLE {schema}.commands
    ALTER COLUMN msg_id SET DEFAULT nextval('{schema}.event_ids'),
    ALTER COLUMN msg_id SET NOT NULL;

-- Lookups by command id alone (the audit trail across domains) use the primary key.
ALTER TABLE {schema}.commands DROP CONSTRAINT commands_pkey;
ALTER TABLE {schema}.commands ADD CONSTRAINT commands_pkey PRIMARY KEY (command_id, domain);

-- Dequeue: per domain and priority, the deliverable commands in visibility then send
-- order. Only PENDING rows are in it, so its size follows the backlog, not the history.
CREATE INDEX commands_pending_idx ON {schema}.commands (domain, priority, vt, msg_id)
    WHERE status = 'PENDING';
-- Expired leases: commands leased by a worker that died or overran its lease.
CREATE INDEX commands_leased_idx ON {schema}.commands (domain, vt)
    WHERE status = 'IN_PROGRESS';

-- Audit rows of leases that ended in a stored event carry that lease, from which the
-- trail derives its RECEIVED event (one row per failed attempt instead of two).
ALTER TABLE {schema}.audit
    ADD COLUMN lease_id  bigint,
    ADD COLUMN leased_at timestamptz,
    ADD COLUMN worker    text;
ALTER TABLE {schema}.audit ALTER COLUMN audit_id DROP IDENTITY;
ALTER TABLE {schema}.audit ALTER COLUMN audit_id SET DEFAULT nextval('{schema}.event_ids');
ALTER SEQUENCE {schema}.event_ids OWNED BY {schema}.audit.audit_id;

-- Rows change on every lease and outcome: room for new versions on the same page.
ALTER TABLE {schema}.commands SET (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
