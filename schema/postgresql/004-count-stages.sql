-- Stages sized in devices (as schema/sqlite/017-count-stages.sql): a stage
-- of 50 reaches the first 50 matching devices in ring order (ring, then
-- id); the cut (the last device it reaches) is fixed when it opens.
ALTER TABLE rollout_stage ADD COLUMN devices bigint
	CHECK (devices IS NULL OR devices BETWEEN 1 AND 10000000);
ALTER TABLE rollout_stage ADD COLUMN cut_ring bigint
	CHECK (cut_ring IS NULL OR cut_ring BETWEEN -1 AND 9999);
ALTER TABLE rollout_stage ADD COLUMN cut_device text;

CREATE FUNCTION otad_rollout_stage_devices() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF new.devices IS NOT NULL AND EXISTS (SELECT 1 FROM rollout_stage
	    WHERE rollout = new.rollout AND no <> new.no AND
	    ((no < new.no AND devices > new.devices) OR
	     (no > new.no AND devices < new.devices))) THEN
		PERFORM otad_refuse('stages out of order: rings only widen');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER rollout_stage_devices BEFORE INSERT OR UPDATE OF devices
	ON rollout_stage FOR EACH ROW
	EXECUTE FUNCTION otad_rollout_stage_devices();
