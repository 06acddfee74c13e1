-- Finished applications by age: retention's search for those past their time (every
-- `retention.cleanup_interval`, on every replica) reads these entries instead of the whole table. Built in
-- the migration's transaction, which holds writes to applications back while it runs: about a second per
-- million rows.
CREATE INDEX applications_finished ON applications (updated_at) WHERE next_poll_at IS NULL;
