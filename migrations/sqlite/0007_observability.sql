-- What an operator watches during a migration: is every calendar current in the target?

-- Per pass: the HTTP requests it made (retries included) and how many got no usable answer, so
-- `status` can give a pair's failed-request percentage over the last hour; what it adopted; and
-- the source changes it saw but could not apply.
ALTER TABLE runs ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN failed_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN backlog INTEGER;          -- NULL: the pass did not get that far

-- Lag: since when the oldest source change not yet in the target has been waiting (NULL when
-- the target is current). Backlog: how many source changes were seen but not applied. Totals
-- count every write since the pair was first synced.
ALTER TABLE pairs ADD COLUMN pending_since INTEGER;
ALTER TABLE pairs ADD COLUMN backlog INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pairs ADD COLUMN total_created INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pairs ADD COLUMN total_updated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pairs ADD COLUMN total_deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pairs ADD COLUMN total_adopted INTEGER NOT NULL DEFAULT 0;

-- HTTP requests per server and minute (unix minutes), kept for an hour: the rate now and the
-- failed-request percentage over the last hour, whichever process made them.
CREATE TABLE server_minutes (
    server      TEXT NOT NULL,
    minute      INTEGER NOT NULL,
    requests    INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    throttled   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, minute)
);

-- Totals per server since the state was created.
CREATE TABLE server_totals (
    server      TEXT PRIMARY KEY NOT NULL,
    requests    INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    throttled   INTEGER NOT NULL DEFAULT 0
);
