-- 018: staffed hours. A stage of a rollout with a promote window opens
-- only inside it ("[DAYS] HH:MM-HH:MM [OFFSET]", the rollout's own
-- utc_offset when it names none); halts happen at any time. NULL: any
-- time. A value that does not parse keeps every stage closed (the
-- controller says so) rather than open one when nobody watches.
ALTER TABLE rollout ADD COLUMN promote TEXT
	CHECK (promote IS NULL OR length(promote) BETWEEN 1 AND 63);
