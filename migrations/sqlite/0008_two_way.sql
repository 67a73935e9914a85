-- Two-way pairs and cutover.
--
-- A pair's authority (the calendar that is the truth) is its source until it is cut over, its
-- target after. A cutover clears the watermarks, the window's memory, quarantine and the target
-- index (which describe one direction), so the first pass after it compares both sides in full.
ALTER TABLE pairs ADD COLUMN cutover_at INTEGER;      -- unix milliseconds; NULL: not cut over
-- The direction the pair last synced in; a change clears its watermarks, so the first pass in
-- the new direction lists both sides in full (NULL: one-way, as every pair was before).
ALTER TABLE pairs ADD COLUMN direction TEXT;

-- The side a pending create writes to (one-way pairs always wrote to the target).
ALTER TABLE pending_creates ADD COLUMN to_side TEXT NOT NULL DEFAULT 'b' CHECK (to_side IN ('a', 'b'));
-- The content a write in flight leaves (NULL in rows of the previous release), and whether it
-- is an update of a mapped copy: a pass after a crash then knows that content for its own
-- write, and a copy edited since for an edit made on that side.
ALTER TABLE pending_creates ADD COLUMN hash TEXT;
ALTER TABLE pending_creates ADD COLUMN is_update INTEGER NOT NULL DEFAULT 0;

-- The window's memory and quarantine name the side their item is on: a two-way pass holds items
-- of both sides. Rows so far were all of the source (side a).
CREATE TABLE outside_window_by_side (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    side                TEXT NOT NULL CHECK (side IN ('a', 'b')),
    href                TEXT NOT NULL,
    etag                TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,    -- '' when the item has no organizer
    identity_uid        TEXT NOT NULL,
    enters_at           INTEGER,          -- unix seconds; NULL when it never will
    window              TEXT NOT NULL,    -- the window setting this was judged by
    PRIMARY KEY (pair_id, side, href)
);
INSERT INTO outside_window_by_side
    SELECT pair_id, 'a', a_href, a_etag, identity_organizer, identity_uid, enters_at, window
    FROM outside_window;
DROP TABLE outside_window;
ALTER TABLE outside_window_by_side RENAME TO outside_window;

CREATE TABLE quarantine_by_side (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    side                TEXT NOT NULL CHECK (side IN ('a', 'b')),
    href                TEXT NOT NULL,    -- the item copied from
    etag                TEXT NOT NULL,    -- the version that failed
    identity_organizer  TEXT NOT NULL,
    identity_uid        TEXT NOT NULL,    -- '' when the item could not be parsed
    error               TEXT NOT NULL,
    count               INTEGER NOT NULL,
    first_seen          INTEGER NOT NULL,
    last_seen           INTEGER NOT NULL,
    quarantined         INTEGER NOT NULL DEFAULT 0,
    retry               INTEGER NOT NULL DEFAULT 0,   -- an operator asked for a retry
    PRIMARY KEY (pair_id, side, href)
);
INSERT INTO quarantine_by_side
    SELECT pair_id, 'a', href, etag, identity_organizer, identity_uid, error, count, first_seen,
           last_seen, quarantined, retry
    FROM quarantine;
DROP TABLE quarantine;
ALTER TABLE quarantine_by_side RENAME TO quarantine;
