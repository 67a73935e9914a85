-- The migration minute by minute, for the page's charts of the last hour: the items written
-- to the servers, and the longest lag of any pair as a service saw it (sampled every few
-- seconds, the longest of the minute kept). Kept a day.
CREATE TABLE minutes (
    minute   INTEGER PRIMARY KEY NOT NULL,  -- unix ms / 60,000
    writes   INTEGER NOT NULL DEFAULT 0,    -- items created, updated or deleted on a server
    lag_ms   INTEGER,                       -- the longest lag seen, if a service looked
    lagging  INTEGER                        -- pairs with changes waiting then (the most seen)
);
