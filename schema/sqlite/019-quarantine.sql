-- 019: a device that keeps failing is quarantined (a penalty box): after
-- quarantine_after failed or rolled-back attempts within its period, the
-- writer sets quarantined_until (the last failure plus the period) and
-- the device is offered nothing before then. An operator clears it
-- (otactl device clear, or by hand): quarantine_cleared is when, and only
-- failures after it count again. Clearing moves catalog.devices, so every
-- node drops the device rows it holds in memory.
ALTER TABLE device ADD COLUMN quarantined_until INTEGER;
ALTER TABLE device ADD COLUMN quarantine_cleared INTEGER;

DROP TRIGGER device_bump_u;
CREATE TRIGGER device_bump_u AFTER UPDATE OF grp, blocked, token_hash,
	quarantine_cleared ON device
	WHEN old.grp IS NOT new.grp OR old.blocked IS NOT new.blocked OR
	    old.token_hash IS NOT new.token_hash OR
	    old.quarantine_cleared IS NOT new.quarantine_cleared
	BEGIN UPDATE catalog SET generation = generation + 1,
	    devices = devices + 1; END;
