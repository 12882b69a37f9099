-- Issue #18: on SQLite, execution records live in a database file of their own beside this one,
-- with migrations of their own (`migrations/sqlite-executions/`): their writer never waits for
-- this file's write lock. The number is kept so that both backends' migrations stay numbered
-- alike (PostgreSQL's 0016 creates the table in its one database).
SELECT 1;
