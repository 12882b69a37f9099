-- Issue #13: a claim takes the due jobs of each app in turn, not the oldest of the whole outbox
-- first. It walks each app's due jobs in the order they fell due, one seek each, so the pending
-- rows are indexed by app first; nothing else reads them by due time alone, so that index goes.

DROP INDEX outbox_pending_due_at_idx;
CREATE INDEX outbox_pending_app_due_at_idx ON outbox (app_id, due_at, id) WHERE status = 'pending';
