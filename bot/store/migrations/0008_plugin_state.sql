-- Small key-value state that plugins keep between runs (X's daily read count, a
-- journal of signed posts), namespaced by plugin, so all state lives in this database.
CREATE TABLE plugin_state (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
