-- The calendars of mailbox pairs: each pairing discovery made, kept so a pair keeps its two
-- calendars through renames, and a calendar gone from a mailbox is said, never acted on.
CREATE TABLE mailbox_calendars (
    pair_id     TEXT PRIMARY KEY NOT NULL,   -- MAILBOX/SEGMENT
    mailbox     TEXT NOT NULL,               -- the mailbox's id
    a_calendar  TEXT NOT NULL,               -- SERVER:PATH of the source calendar
    b_calendar  TEXT NOT NULL,               -- SERVER:PATH of the target calendar
    gone        TEXT,                        -- why the pair stopped, if it did
    a_name      TEXT,                        -- each side's display name and colour as the
    a_color     TEXT,                        -- last discovery left them: a change on the
    b_name      TEXT,                        -- authority's side is written to the other
    b_color     TEXT,
    updated_at  INTEGER NOT NULL             -- unix ms
);

CREATE INDEX mailbox_calendars_mailbox ON mailbox_calendars (mailbox);
