-- Issue #17, modules: which module scripts each script imports, written in the same transaction
-- as the script from the literal `import "name"` declarations of its source. Deleting either
-- script removes its edges; the admin API refuses to delete (or rename) a module that others
-- import unless asked to force it. The reverse index answers "who imports this module".
CREATE TABLE script_imports (
    importer_id TEXT NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    imported_id TEXT NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    PRIMARY KEY (importer_id, imported_id),
    CHECK (importer_id <> imported_id)
);
CREATE INDEX script_imports_imported_idx ON script_imports (imported_id);
