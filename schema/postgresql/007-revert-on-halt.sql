-- Revert on halt (as schema/sqlite/020-revert-on-halt.sql).
ALTER TABLE rollout ADD COLUMN on_halt text NOT NULL DEFAULT 'hold'
	CHECK (on_halt IN ('hold', 'revert'));
ALTER TABLE rollout ADD COLUMN revert_of bigint REFERENCES rollout (id);
