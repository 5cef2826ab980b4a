-- An operator's edit of a device moves the catalog generation (as
-- schema/sqlite/016-device-edits.sql): only the columns operators set,
-- only when their value changes, so a check-in costs no generation.
CREATE TRIGGER device_bump_u AFTER UPDATE OF grp, blocked, token_hash
	ON device FOR EACH ROW
	WHEN (old.grp IS DISTINCT FROM new.grp OR
	    old.blocked IS DISTINCT FROM new.blocked OR
	    old.token_hash IS DISTINCT FROM new.token_hash)
	EXECUTE FUNCTION otad_bump();
CREATE TRIGGER device_bump_d AFTER DELETE ON device
	FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();
