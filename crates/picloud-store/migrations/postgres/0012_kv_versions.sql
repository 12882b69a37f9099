-- Issue #15, transactional executions: every KV entry carries the version of the commit that
-- wrote it, so that a run's commit can check that what the run read is still what is stored.
--
-- app_usage.kv_version: the app's commit sequence. A commit that writes the app's KV adds one
-- and stamps the rows it writes with the new number. It never goes back, so an entry deleted and
-- written again never carries a version a reader saw before the delete.
--
-- kv_entries.version: the commit that last wrote the entry. Entries written before this
-- migration share version 0; the first commit after it numbers from 1.

ALTER TABLE kv_entries ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

ALTER TABLE app_usage ADD COLUMN kv_version BIGINT NOT NULL DEFAULT 0;
