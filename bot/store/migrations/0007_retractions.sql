-- Posts deleted upstream, and the chat messages that carried them still to be removed
-- (or marked). A row per message is stored before the chat is asked, so a restart
-- finishes the job; the tombstone makes a second report of the same delete do nothing.
CREATE TABLE tombstones (
    post_uid TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE retractions (
    channel_id INTEGER NOT NULL,
    post_uid TEXT NOT NULL,
    message_ref TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (channel_id, post_uid)
) WITHOUT ROWID;
CREATE INDEX retractions_pending ON retractions (state) WHERE state = 'pending';

-- Deletes, edits and threads look deliveries up by post across channels.
CREATE INDEX deliveries_post ON deliveries (post_uid);
