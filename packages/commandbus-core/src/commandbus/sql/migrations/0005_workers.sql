-- commandbus schema, version 5: the worker registry. {schema} is the schema name.
--
-- Every running Worker and ProcessReplyRouter keeps one row here: inserted when it
-- starts, its heartbeat_at and in_flight refreshed every heartbeat_interval seconds,
-- deleted when it stops cleanly. A process killed hard leaves its row behind; the row
-- is stale once its heartbeat is older than three intervals, and is forgotten when a
-- later registration finds it a day old (see register_worker.sql).
CREATE TABLE {schema}.workers (
    -- Worker.name: host:pid:hex id of the object (a router's is built the same way).
    id                 text        PRIMARY KEY,
    kind               text        NOT NULL CHECK (kind IN ('worker', 'router')),
    host               text        NOT NULL,
    pid                integer     NOT NULL,
    -- The domain a worker serves, or the reply queue a router reads.
    domain             text        NOT NULL,
    concurrency        integer     NOT NULL,
    -- The commandbus-core version it runs.
    version            text        NOT NULL,
    -- Seconds between heartbeats, as this worker sends them: staleness is judged by it.
    heartbeat_interval float8      NOT NULL,
    -- Commands (or replies) leased and not finished at the last heartbeat.
    in_flight          integer     NOT NULL DEFAULT 0,
    started_at         timestamptz NOT NULL DEFAULT now(),
    heartbeat_at       timestamptz NOT NULL DEFAULT now()
) WITH (
    -- A few rows, each updated every heartbeat: room for HOT updates on the same page.
    fillfactor = 50
);
