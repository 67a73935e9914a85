-- Two-way pairs and cutover.
--
-- A pair's authority (the calendar that is the truth) is its source until it is cut over, its
-- target after. The window's memory, quarantine and the target index describe the side a
-- one-way pass copies from and to; a cutover clears them with the watermarks, so the first pass
-- after it compares both sides in full.
ALTER TABLE pairs ADD COLUMN cutover_at INTEGER;      -- unix milliseconds; NULL: not cut over

-- The side a pending create writes to (one-way pairs always wrote to the target).
ALTER TABLE pending_creates ADD COLUMN to_side TEXT NOT NULL DEFAULT 'b' CHECK (to_side IN ('a', 'b'));
