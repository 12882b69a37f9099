-- Issue #19: on PostgreSQL, triggers tell every node what changed (`LISTEN`). SQLite has one
-- process, which knows what it changed; the number is kept so that both backends' migrations
-- stay numbered alike.
SELECT 1;
