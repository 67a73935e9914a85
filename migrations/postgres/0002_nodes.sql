-- Several nodes: the same tables as SQLite's 0009_nodes.sql, commented there.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY NOT NULL,
    host          TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    version       TEXT NOT NULL,
    listen        TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    stopped_at    BIGINT
);

CREATE TABLE claims (
    pair_id     TEXT PRIMARY KEY NOT NULL,
    node        TEXT NOT NULL,
    claimed_at  BIGINT NOT NULL
);

CREATE INDEX claims_node ON claims (node);

ALTER TABLE runs ADD COLUMN node TEXT;
