-- SQLite's 0008 rebuilds its outbox as a table WITHOUT ROWID, keyed by the id alone. A
-- PostgreSQL table has no rowid to drop: nothing changes here. The file keeps the two backends'
-- migrations numbered alike.
SELECT 1;
