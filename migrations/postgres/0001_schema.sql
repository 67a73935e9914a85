-- The state store on PostgreSQL, for several nodes sharing one database: the same tables as the
-- SQLite migrations 0001 to 0008 leave, commented there. Every integer is BIGINT (unix
-- milliseconds, counts, tokens, 0/1 flags), so one code path reads both backends alike.

CREATE TABLE pairs (
    id               TEXT PRIMARY KEY NOT NULL,
    a_calendar       TEXT NOT NULL,
    b_calendar       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_success_at  BIGINT,
    pending_since    BIGINT,
    backlog          BIGINT NOT NULL DEFAULT 0,
    total_created    BIGINT NOT NULL DEFAULT 0,
    total_updated    BIGINT NOT NULL DEFAULT 0,
    total_deleted    BIGINT NOT NULL DEFAULT 0,
    total_adopted    BIGINT NOT NULL DEFAULT 0,
    cutover_at       BIGINT,
    direction        TEXT
);

CREATE TABLE mappings (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    a_href              TEXT NOT NULL,
    a_etag              TEXT NOT NULL,
    b_href              TEXT NOT NULL,
    b_etag              TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,
    content_hash        TEXT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (pair_id, a_href),
    UNIQUE (pair_id, b_href)
);

CREATE INDEX mappings_identity ON mappings (pair_id, identity_uid, identity_organizer);

CREATE TABLE pending_creates (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    a_href              TEXT NOT NULL,
    b_href              TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    to_side             TEXT NOT NULL DEFAULT 'b' CHECK (to_side IN ('a', 'b')),
    hash                TEXT,
    is_update           BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (pair_id, a_href, b_href)
);

CREATE TABLE watermarks (
    pair_id     TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    side        TEXT NOT NULL CHECK (side IN ('a', 'b')),
    token       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (pair_id, side)
);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY NOT NULL,
    pair_id          TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('sync', 'resync')),
    started_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    outcome          TEXT CHECK (outcome IN ('ok', 'partial', 'failed')),
    created          BIGINT NOT NULL DEFAULT 0,
    updated          BIGINT NOT NULL DEFAULT 0,
    deleted          BIGINT NOT NULL DEFAULT 0,
    unchanged        BIGINT NOT NULL DEFAULT 0,
    failed           BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    adopted          BIGINT NOT NULL DEFAULT 0,
    requests         BIGINT NOT NULL DEFAULT 0,
    failed_requests  BIGINT NOT NULL DEFAULT 0,
    throttled        BIGINT NOT NULL DEFAULT 0,
    backlog          BIGINT
);

CREATE INDEX runs_pair_started ON runs (pair_id, started_at);

CREATE TABLE target_items (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    href                TEXT NOT NULL,
    etag                TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,
    PRIMARY KEY (pair_id, href)
);

CREATE INDEX target_items_identity ON target_items (pair_id, identity_uid, identity_organizer);

CREATE TABLE pair_states (
    pair_id     TEXT PRIMARY KEY NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    state       TEXT NOT NULL CHECK (state IN ('active', 'paused', 'backoff', 'disabled')),
    reason      TEXT,
    until       BIGINT,
    failures    BIGINT NOT NULL DEFAULT 0,
    next_run    BIGINT,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE leases (
    calendar    TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sync', 'repair', 'external')),
    token       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE server_minutes (
    server      TEXT NOT NULL,
    minute      BIGINT NOT NULL,
    requests    BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    throttled   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (server, minute)
);

CREATE TABLE server_totals (
    server      TEXT PRIMARY KEY NOT NULL,
    requests    BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    throttled   BIGINT NOT NULL DEFAULT 0
);

-- "window" is a reserved word in PostgreSQL: the statements quote it.
CREATE TABLE outside_window (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    side                TEXT NOT NULL CHECK (side IN ('a', 'b')),
    href                TEXT NOT NULL,
    etag                TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,
    enters_at           BIGINT,
    "window"            TEXT NOT NULL,
    PRIMARY KEY (pair_id, side, href)
);

CREATE TABLE quarantine (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    side                TEXT NOT NULL CHECK (side IN ('a', 'b')),
    href                TEXT NOT NULL,
    etag                TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,
    error               TEXT NOT NULL,
    count               BIGINT NOT NULL,
    first_seen          BIGINT NOT NULL,
    last_seen           BIGINT NOT NULL,
    quarantined         BIGINT NOT NULL DEFAULT 0,
    retry               BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (pair_id, side, href)
);
