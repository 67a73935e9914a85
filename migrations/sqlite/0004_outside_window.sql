-- Source items that are new or changed but lie outside the sync window, so nothing was written
-- for them. An incremental listing will not mention them again; this table brings each one back
-- when it is due to enter the window (or when the window setting changes), and tells
-- `extras = "delete"` that a target copy of such an item did come from the source.
CREATE TABLE outside_window (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    a_href              TEXT NOT NULL,
    a_etag              TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,    -- '' when the item has no organizer
    identity_uid        TEXT NOT NULL,
    enters_at           INTEGER,          -- unix seconds; NULL when it never will
    window              TEXT NOT NULL,    -- the window setting this was judged by
    PRIMARY KEY (pair_id, a_href)
);
