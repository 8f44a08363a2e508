-- Starling schema v1. Every state Starling keeps lives in this one file.
CREATE TABLE channels (
    id INTEGER PRIMARY KEY,
    platform TEXT NOT NULL,
    native_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    UNIQUE (platform, native_id)
);

-- One row per upstream thing fetched; several subscriptions share it (fan-out after fetch).
CREATE TABLE resources (
    id INTEGER PRIMARY KEY,
    network TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    display TEXT NOT NULL DEFAULT '',
    cursor TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (network, kind, key)
);

CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels (id),
    resource_id INTEGER NOT NULL REFERENCES resources (id),
    filters TEXT NOT NULL DEFAULT '{}',
    interval_s REAL NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    paused_reason TEXT NOT NULL DEFAULT '',
    UNIQUE (channel_id, resource_id)
);
CREATE INDEX subscriptions_resource ON subscriptions (resource_id);

-- Dedupe keys per resource: an item is admitted once, whatever its `updated` says.
CREATE TABLE seen (
    resource_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    first_seen REAL NOT NULL,
    PRIMARY KEY (resource_id, key)
) WITHOUT ROWID;

-- Durable outbox: a rendered message waiting for its chat. Unique per channel and post,
-- so the same post reached through two routes is delivered once per channel.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels (id),
    subscription_id INTEGER NOT NULL,
    post_uid TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    UNIQUE (channel_id, post_uid)
);

-- Which chat message carried which post: survives restarts for edits and threads.
CREATE TABLE deliveries (
    channel_id INTEGER NOT NULL,
    post_uid TEXT NOT NULL,
    message_ref TEXT NOT NULL,
    subscription_id INTEGER NOT NULL,
    delivered_at REAL NOT NULL,
    PRIMARY KEY (channel_id, post_uid)
) WITHOUT ROWID;

-- Upstream request outcomes per network, host and minute: what outage detection reads.
CREATE TABLE health_minutes (
    network TEXT NOT NULL,
    host TEXT NOT NULL,
    minute INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    latency_sum REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (network, host, minute, outcome)
) WITHOUT ROWID;

CREATE TABLE health_hosts (
    network TEXT NOT NULL,
    host TEXT NOT NULL,
    last_outcome TEXT NOT NULL,
    last_status INTEGER,
    last_detail TEXT NOT NULL DEFAULT '',
    last_ok_at REAL,
    last_failure_at REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (network, host)
) WITHOUT ROWID;
