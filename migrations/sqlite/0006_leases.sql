-- Calendar leases: whoever writes a calendar (a sync pass, the repair assistant, an operator's
-- outside tool) holds its lease. The fencing token only grows: each new holder gets a higher one,
-- and a holder whose token is no longer current stops writing. A released or expired row stays so
-- the next token is higher still. Leases replace the per-pair claims.
CREATE TABLE leases (
    calendar    TEXT PRIMARY KEY NOT NULL,    -- SERVER:PATH
    holder      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sync', 'repair', 'external')),
    token       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL              -- unix milliseconds; in the past once released
);

DROP TABLE pair_claims;
