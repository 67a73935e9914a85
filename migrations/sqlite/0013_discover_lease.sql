-- A mailbox's discovery holds a lease too (named `mailbox ID`, kind 'discover'), so two never
-- make the same calendar. SQLite changes a CHECK only by building the table again.
CREATE TABLE leases_new (
    calendar    TEXT PRIMARY KEY NOT NULL,    -- SERVER:PATH, or `mailbox ID`
    holder      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sync', 'repair', 'external', 'discover')),
    token       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL              -- unix milliseconds; in the past once released
);
INSERT INTO leases_new (calendar, holder, kind, token, expires_at)
    SELECT calendar, holder, kind, token, expires_at FROM leases;
DROP TABLE leases;
ALTER TABLE leases_new RENAME TO leases;
