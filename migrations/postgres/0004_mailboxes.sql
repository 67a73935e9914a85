-- The calendars of mailbox pairs: the same table as SQLite's 0011_mailboxes.sql, commented there.
CREATE TABLE mailbox_calendars (
    pair_id     TEXT PRIMARY KEY NOT NULL,
    mailbox     TEXT NOT NULL,
    a_calendar  TEXT NOT NULL,
    b_calendar  TEXT NOT NULL,
    gone        TEXT,
    a_name      TEXT,
    a_color     TEXT,
    b_name      TEXT,
    b_color     TEXT,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX mailbox_calendars_mailbox ON mailbox_calendars (mailbox);
