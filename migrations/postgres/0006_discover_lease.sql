-- A mailbox's discovery holds a lease too: SQLite's 0013_discover_lease.sql, commented there.
ALTER TABLE leases DROP CONSTRAINT leases_kind_check;
ALTER TABLE leases ADD CONSTRAINT leases_kind_check
    CHECK (kind IN ('sync', 'repair', 'external', 'discover'));
