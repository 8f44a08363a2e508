-- Rows sent together as one digest message share a digest key, so recovery after a
-- crash looks the digest up on the chat instead of resending its posts one by one.
ALTER TABLE outbox ADD COLUMN digest_key TEXT NOT NULL DEFAULT '';
