-- WebDAV-Push subscriptions: the same table as SQLite's 0010_push.sql, commented there.
CREATE TABLE push_subscriptions (
    token         TEXT PRIMARY KEY NOT NULL,
    pair_id       TEXT NOT NULL,
    side          TEXT NOT NULL,
    server        TEXT NOT NULL,
    calendar      TEXT NOT NULL,
    push_url      TEXT NOT NULL,
    location      TEXT NOT NULL,
    expires_at    BIGINT NOT NULL,
    private_key   TEXT NOT NULL,
    auth_secret   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    renewed_at    BIGINT NOT NULL,
    last_push_at  BIGINT
);

CREATE UNIQUE INDEX push_subscriptions_calendar ON push_subscriptions (pair_id, side);
