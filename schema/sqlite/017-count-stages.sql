-- 017: stages sized in devices. A stage of 50 (no %) reaches the first 50
-- matching devices in ring order (ring, then id), whatever the fleet's
-- size. Where that cut falls is fixed when the stage opens (cut_ring and
-- cut_device: the last device it reaches), so a device registering later
-- does not push one out; the stage's percent is the widest before it.
ALTER TABLE rollout_stage ADD COLUMN devices INTEGER
	CHECK (devices IS NULL OR devices BETWEEN 1 AND 10000000);
ALTER TABLE rollout_stage ADD COLUMN cut_ring INTEGER
	CHECK (cut_ring IS NULL OR cut_ring BETWEEN -1 AND 9999);
ALTER TABLE rollout_stage ADD COLUMN cut_device TEXT;

-- counts only widen too
CREATE TRIGGER rollout_stage_devices_i BEFORE INSERT ON rollout_stage
	WHEN new.devices IS NOT NULL AND EXISTS (SELECT 1 FROM rollout_stage
	    WHERE rollout = new.rollout AND no < new.no AND
	    devices > new.devices)
	BEGIN SELECT RAISE(ABORT, 'stages out of order: rings only widen'); END;
CREATE TRIGGER rollout_stage_devices_u BEFORE UPDATE OF devices
	ON rollout_stage WHEN new.devices IS NOT NULL AND EXISTS (SELECT 1
	    FROM rollout_stage WHERE rollout = new.rollout AND
	    ((no < new.no AND devices > new.devices) OR
	     (no > new.no AND devices < new.devices)))
	BEGIN SELECT RAISE(ABORT, 'stages out of order: rings only widen'); END;
