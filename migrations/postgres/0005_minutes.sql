-- The migration minute by minute: the same table as SQLite's 0012_minutes.sql, commented there.
CREATE TABLE minutes (
    minute   BIGINT PRIMARY KEY NOT NULL,
    writes   BIGINT NOT NULL DEFAULT 0,
    lag_ms   BIGINT,
    lagging  BIGINT
);
