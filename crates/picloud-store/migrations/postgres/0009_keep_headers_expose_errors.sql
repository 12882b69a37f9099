-- Issue #12, what is stored and what anonymous callers are shown.
-- routes.keep_headers: the sensitive request headers an async route keeps in its stored payload
-- all the same, lower-case names separated by spaces ('' for none, the default).
-- apps.expose_errors: whether anonymous callers of the app's routes see a failed execution's
-- message, line and column (a development app); by default they see only its kind and id.

ALTER TABLE routes ADD COLUMN keep_headers TEXT NOT NULL DEFAULT '';

ALTER TABLE apps ADD COLUMN expose_errors BOOLEAN NOT NULL DEFAULT FALSE;
