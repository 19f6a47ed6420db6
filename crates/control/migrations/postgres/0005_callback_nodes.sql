-- Which node owns an open push: on restart a node sends event 0 only for its own pushes (several nodes may share
-- one PostgreSQL store).
ALTER TABLE callback_open_pushes ADD COLUMN node TEXT NOT NULL DEFAULT '';
-- Finished rows are pruned by age.
CREATE INDEX callback_outbox_created ON callback_outbox (created_at);
