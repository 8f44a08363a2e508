-- The links and alt texts of a post-back's images (JSON), in the post's own row, so
-- a crash right after `/post` cannot send it without them. The bytes are not kept:
-- after a restart the images are downloaded again.
ALTER TABLE postbacks ADD COLUMN images TEXT NOT NULL DEFAULT '';
