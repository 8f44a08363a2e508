-- Mirror accounts: a subscription may stand in for another one while that one's
-- network is down. Fingerprints of what a mirror group delivered keep the same
-- cross-posted text from reaching a channel twice (once per network).
ALTER TABLE subscriptions ADD COLUMN mirror_of INTEGER;

CREATE TABLE mirror_prints (
    channel_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (channel_id, fingerprint)
) WITHOUT ROWID;
