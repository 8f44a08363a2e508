-- Outages Starling has seen, and the chat messages that announced them, so a restart
-- in the middle of an outage neither repeats nor forgets its announcement.
CREATE TABLE outages (
    id INTEGER PRIMARY KEY,
    network TEXT NOT NULL,
    host TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    detail TEXT NOT NULL DEFAULT '',
    caught_up INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outages_open ON outages (network, host) WHERE ended_at IS NULL;

CREATE TABLE outage_messages (
    outage_id INTEGER NOT NULL REFERENCES outages (id),
    channel_id INTEGER NOT NULL,
    message_ref TEXT NOT NULL,
    affected INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (outage_id, channel_id)
) WITHOUT ROWID;
