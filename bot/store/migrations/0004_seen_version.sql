-- The version (edited time) of each admitted post, so an edit upstream edits the
-- chat message that carried it instead of posting it again.
ALTER TABLE seen ADD COLUMN version TEXT NOT NULL DEFAULT '';
