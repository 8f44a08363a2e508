-- Post-back parts are shown in the order the member typed after --to, not alphabetically.
ALTER TABLE postback_targets ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
-- `/post --thread`: a long text goes out as a reply chain. `parts` holds the native ids
-- of the posts already published on that network, one per line, so a retry after a
-- crash or an outage carries on from the next part instead of starting again.
ALTER TABLE postbacks ADD COLUMN thread INTEGER NOT NULL DEFAULT 0;
ALTER TABLE postback_targets ADD COLUMN parts TEXT NOT NULL DEFAULT '';
