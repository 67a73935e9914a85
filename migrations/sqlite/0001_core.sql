-- Pairs, item mappings and watermarks: what one-way sync needs to be incremental and crash-safe.
-- Columns are side-neutral (a = the pair's configured source, b = its target) so a pair whose
-- direction flips at cutover keeps its mappings.

CREATE TABLE pairs (
    id          TEXT PRIMARY KEY NOT NULL,
    a_calendar  TEXT NOT NULL,            -- SERVER:PATH
    b_calendar  TEXT NOT NULL,
    created_at  INTEGER NOT NULL          -- unix milliseconds
);

-- One row per item known on both sides; written only after the remote write succeeded.
CREATE TABLE mappings (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    a_href              TEXT NOT NULL,
    a_etag              TEXT NOT NULL,
    b_href              TEXT NOT NULL,
    b_etag              TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,    -- '' when the item has no organizer
    identity_uid        TEXT NOT NULL,
    content_hash        TEXT NOT NULL,    -- hash of what b holds (source after rewriting)
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (pair_id, a_href),
    UNIQUE (pair_id, b_href)
);

CREATE INDEX mappings_identity ON mappings (pair_id, identity_uid, identity_organizer);

-- Creates that were sent but whose outcome is not yet recorded. If the process dies between the
-- remote write and recording the mapping, the next pass finds the copy through this row: it is
-- adopted if the source item still exists, deleted if the source item is gone.
CREATE TABLE pending_creates (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    a_href              TEXT NOT NULL,
    b_href              TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    PRIMARY KEY (pair_id, a_href, b_href)
);

-- Sync tokens per side; saved only after the pass's writes were recorded.
CREATE TABLE watermarks (
    pair_id     TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    side        TEXT NOT NULL CHECK (side IN ('a', 'b')),
    token       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (pair_id, side)
);
