-- 016: an operator's edit of a device moves the catalog generation.
--
-- otad keeps every device's row in memory for checks, current with what
-- its writer records; edits made elsewhere (otactl, the management API,
-- SQL by hand) reach it through catalog.devices, which it watches and
-- whose change drops those rows (a change of releases or rollouts does
-- not). The generation moves too, so otactl waits until otad serves the
-- edit. Only the columns operators set are watched, and only when their
-- value changes: the writer never sets them, so a check-in moves
-- nothing. (otactl's `device set` of a hardware revision or chip moves
-- both in its own transaction.)
ALTER TABLE catalog ADD COLUMN devices INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER device_bump_u AFTER UPDATE OF grp, blocked, token_hash
	ON device
	WHEN old.grp IS NOT new.grp OR old.blocked IS NOT new.blocked OR
	    old.token_hash IS NOT new.token_hash
	BEGIN UPDATE catalog SET generation = generation + 1,
	    devices = devices + 1; END;
CREATE TRIGGER device_bump_d AFTER DELETE ON device
	BEGIN UPDATE catalog SET generation = generation + 1,
	    devices = devices + 1; END;
