-- The identity of target items that did not come from this pair's source (made by a repair
-- assistant, by hand, or by a crashed run), read once per etag. Before creating a copy, tandem
-- looks here for the same meeting and adopts it instead of making a second one.
CREATE TABLE target_items (
    pair_id             TEXT NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    href                TEXT NOT NULL,
    etag                TEXT NOT NULL,
    identity_organizer  TEXT NOT NULL,    -- '' when the item has no organizer
    identity_uid        TEXT NOT NULL,    -- clean UID; '' when the item could not be parsed
    PRIMARY KEY (pair_id, href)
);

CREATE INDEX target_items_identity ON target_items (pair_id, identity_uid, identity_organizer);
