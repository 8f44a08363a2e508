-- An edit or a delete upstream changes a chat message only when that message carried
-- that one post (a digest is left alone). The check counts the deliveries that share
-- the message; without this index it read every delivery of the channel.
CREATE INDEX deliveries_message ON deliveries (channel_id, message_ref);
