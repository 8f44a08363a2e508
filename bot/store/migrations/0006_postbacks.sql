-- Post-back: posts the team sends from chat to its own accounts. A row exists before
-- anything is sent; each network's delivery is tracked on its own.
CREATE TABLE postbacks (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels (id),
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    reply_to TEXT NOT NULL DEFAULT '',
    quote_of TEXT NOT NULL DEFAULT '',
    content_warning TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL
        CHECK (state IN ('awaiting_approval', 'approved', 'rejected', 'undone')),
    created_at REAL NOT NULL,
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at REAL,
    request_ref TEXT NOT NULL DEFAULT ''
);
CREATE INDEX postbacks_author ON postbacks (author, created_at);

CREATE TABLE postback_targets (
    postback_id INTEGER NOT NULL REFERENCES postbacks (id),
    network TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'failed', 'deleted')),
    attempts INTEGER NOT NULL DEFAULT 0,
    native_id TEXT NOT NULL DEFAULT '',
    url TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    not_before REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (postback_id, network)
) WITHOUT ROWID;
