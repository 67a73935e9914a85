-- WebDAV-Push: one subscription per calendar of a pair whose server pushes its changes.
--
-- A server POSTs to `push_url` (tandem's listener, ending in the unguessable `token`) when the
-- calendar changes; the token names the pair and side without trusting the push for anything
-- else. `location` is the subscription on the server (DELETE ends it). The key and auth secret
-- are the ones the draft asks a subscriber for.
CREATE TABLE push_subscriptions (
    token         TEXT PRIMARY KEY NOT NULL,
    pair_id       TEXT NOT NULL,
    side          TEXT NOT NULL,             -- 'source' or 'target'
    server        TEXT NOT NULL,             -- the configured server's name
    calendar      TEXT NOT NULL,             -- the collection's path
    push_url      TEXT NOT NULL,
    location      TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,          -- unix ms
    private_key   TEXT NOT NULL,             -- P-256, PKCS#8, base64url
    auth_secret   TEXT NOT NULL,             -- 16 bytes, base64url
    created_at    INTEGER NOT NULL,
    renewed_at    INTEGER NOT NULL,
    last_push_at  INTEGER
);

CREATE UNIQUE INDEX push_subscriptions_calendar ON push_subscriptions (pair_id, side);
