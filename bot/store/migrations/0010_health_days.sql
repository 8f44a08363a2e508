-- Per network, UTC day and outcome: the request counts the 30-day status page shows.
-- Kept up to date at each health flush beside health_minutes, so the page reads a
-- few hundred rows however many hosts there are (per-minute rows grow with hosts).
CREATE TABLE health_days (
    network TEXT NOT NULL,
    day INTEGER NOT NULL,  -- days since 1970-01-01 (UTC)
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    latency_sum REAL NOT NULL,
    PRIMARY KEY (network, day, outcome)
) WITHOUT ROWID;

-- The history recorded before this table existed.
INSERT INTO health_days (network, day, outcome, count, latency_sum)
SELECT network, minute / 1440, outcome, SUM(count), SUM(latency_sum)
FROM health_minutes
GROUP BY network, minute / 1440, outcome;
