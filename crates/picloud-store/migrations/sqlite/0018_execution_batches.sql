-- Issue #18: execution records in batches. On SQLite the records live in a file of their own,
-- with migrations of their own (`migrations/sqlite-executions/0002_execution_batches.sql`); the
-- number is kept so that both backends' migrations stay numbered alike.
SELECT 1;
