-- A device that keeps failing is quarantined (as
-- schema/sqlite/019-quarantine.sql): offered nothing before
-- quarantined_until; an operator's clear (quarantine_cleared) moves
-- catalog.devices.
ALTER TABLE device ADD COLUMN quarantined_until bigint;
ALTER TABLE device ADD COLUMN quarantine_cleared bigint;

DROP TRIGGER device_bump_u ON device;
CREATE TRIGGER device_bump_u AFTER UPDATE OF grp, blocked, token_hash,
	quarantine_cleared ON device FOR EACH ROW
	WHEN (old.grp IS DISTINCT FROM new.grp OR
	    old.blocked IS DISTINCT FROM new.blocked OR
	    old.token_hash IS DISTINCT FROM new.token_hash OR
	    old.quarantine_cleared IS DISTINCT FROM new.quarantine_cleared)
	EXECUTE FUNCTION otad_bump_devices();
