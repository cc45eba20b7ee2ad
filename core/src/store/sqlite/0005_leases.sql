-- intentkit schema v5: background work claimed by one process at a time (several processes
-- may share one file: PHP workers, an intentkitd beside them). A lease per job and account,
-- taken for a bounded time; `fence` grows each time it changes hands.

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    fence       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
