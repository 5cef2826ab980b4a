-- 020: revert on halt. A rollout with on_halt = 'revert', when it halts,
-- offers every device that runs its release the release it ran before
-- (the previous baseline of the scope) as a forced downgrade: a rollout of
-- its own, revert_of naming the halted one, offered only to devices on the
-- halted release. Devices whose eFuse that release raised cannot go back:
-- they are stranded, listed, not offered.
ALTER TABLE rollout ADD COLUMN on_halt TEXT NOT NULL DEFAULT 'hold'
	CHECK (on_halt IN ('hold', 'revert'));
ALTER TABLE rollout ADD COLUMN revert_of INTEGER REFERENCES rollout (id);
