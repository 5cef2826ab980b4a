-- An operator's edit of a device moves the catalog generation and
-- catalog.devices (as schema/sqlite/016-device-edits.sql): only the
-- columns operators set, only when their value changes, so a check-in
-- moves nothing.
ALTER TABLE catalog ADD COLUMN devices bigint NOT NULL DEFAULT 0;

CREATE FUNCTION otad_bump_devices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE catalog SET generation = generation + 1,
	    devices = devices + 1;
	PERFORM pg_notify('otad_catalog', '');
	RETURN NULL;
END $$;

CREATE TRIGGER device_bump_u AFTER UPDATE OF grp, blocked, token_hash
	ON device FOR EACH ROW
	WHEN (old.grp IS DISTINCT FROM new.grp OR
	    old.blocked IS DISTINCT FROM new.blocked OR
	    old.token_hash IS DISTINCT FROM new.token_hash)
	EXECUTE FUNCTION otad_bump_devices();
CREATE TRIGGER device_bump_d AFTER DELETE ON device
	FOR EACH STATEMENT EXECUTE FUNCTION otad_bump_devices();
