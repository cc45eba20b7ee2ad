-- intentkit schema v6: rates shared by every process on the file (PHP workers, each with its
-- own handle, and an intentkitd beside them): the least gap between two claim look-ups for
-- one intent, and each provider account's call budget. One row per key holds its
-- "theoretical arrival time" (GCRA, Unix milliseconds): a slot is free once it is near
-- enough, and taking one moves it on by the rate's interval.

CREATE TABLE rate_slots (
    key  TEXT PRIMARY KEY,
    tat  INTEGER NOT NULL
) WITHOUT ROWID;
