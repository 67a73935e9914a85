-- Several nodes: who runs, and which node runs which pair.
--
-- Every `tandem run` registers itself as a node and heartbeats; a node is alive while its
-- `expires_at` (the database's clock, unix ms) is ahead. A pair is run by the node its claim
-- names, and only while that node is alive: a dead node's claims are free to take.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY NOT NULL,   -- "HOST pid N TAG", also its lease holder name
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    version       TEXT NOT NULL,
    listen        TEXT NOT NULL,               -- its status page and API
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    stopped_at    INTEGER                      -- left cleanly; NULL while it runs or if it died
);

CREATE TABLE claims (
    pair_id     TEXT PRIMARY KEY NOT NULL,    -- a configured pair (it may not be in `pairs` yet)
    node        TEXT NOT NULL,
    claimed_at  INTEGER NOT NULL
);

CREATE INDEX claims_node ON claims (node);

-- The node that ran each pass (NULL: a command, or a pass of an earlier release).
ALTER TABLE runs ADD COLUMN node TEXT;
