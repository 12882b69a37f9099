-- Issue #16, documents: each collection's version — the app's commit (app_usage.kv_version)
-- that last wrote one of its documents. A run's `find` reads it before it reads the documents;
-- at the run's commit an unchanged version proves that the find still finds the same, without
-- running the query again on the writer. Only a changed one runs the query again.
CREATE TABLE doc_collections (
    app_id     TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    collection TEXT   COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (app_id, collection)
);
