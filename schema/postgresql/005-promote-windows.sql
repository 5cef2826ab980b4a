-- Staffed hours (as schema/sqlite/018-promote-windows.sql): stages open
-- only inside the rollout's promote window; NULL: any time.
ALTER TABLE rollout ADD COLUMN promote text
	CHECK (promote IS NULL OR length(promote) BETWEEN 1 AND 63);
