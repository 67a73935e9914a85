-- Run history: one row per pass of a pair, so `status` can say what happened and when.

CREATE TABLE runs (
    id           TEXT PRIMARY KEY NOT NULL,   -- uuid
    pair_id      TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('sync', 'resync')),
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,                     -- NULL while running or after a crash
    outcome      TEXT CHECK (outcome IN ('ok', 'partial', 'failed')),
    created      INTEGER NOT NULL DEFAULT 0,
    updated      INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    unchanged    INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    error        TEXT
);

CREATE INDEX runs_pair_started ON runs (pair_id, started_at);

ALTER TABLE pairs ADD COLUMN last_success_at INTEGER;
