-- What the service (`tandem run`) needs to keep every pair going for months.

-- A pair's state: active; paused (its mailbox is being moved or locked: resumes by itself at
-- `until`); backoff (repeated failures: retried at `until`, the wait doubling up to a cap);
-- disabled (by an operator, and only by one).
CREATE TABLE pair_states (
    pair_id     TEXT PRIMARY KEY NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    state       TEXT NOT NULL CHECK (state IN ('active', 'paused', 'backoff', 'disabled')),
    reason      TEXT,
    until       INTEGER,                  -- unix milliseconds (paused, backoff)
    failures    INTEGER NOT NULL DEFAULT 0,
    next_run    INTEGER,                  -- unix milliseconds, as last scheduled by a service
    updated_at  INTEGER NOT NULL
);

-- Source items that failed with a permanent error (unparseable, refused by the target). After
-- three failures an item is quarantined: skipped while the rest of its pair syncs, until its
-- source etag changes or an operator asks for a retry.
CREATE TABLE quarantine (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    href                TEXT NOT NULL,    -- the source item
    etag                TEXT NOT NULL,    -- the version that failed
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,    -- '' when the item could not be parsed
    error               TEXT NOT NULL,
    count               INTEGER NOT NULL,
    first_seen          INTEGER NOT NULL,
    last_seen           INTEGER NOT NULL,
    quarantined         INTEGER NOT NULL DEFAULT 0,
    retry               INTEGER NOT NULL DEFAULT 0,   -- an operator asked for a retry
    PRIMARY KEY (pair_id, href)
);

-- Who is syncing a pair right now, so two processes on one database never sync it at once. A
-- claim of a crashed process expires by itself.
CREATE TABLE pair_claims (
    pair_id     TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL          -- unix milliseconds
);
