-- 011: a device's anti-rollback level (its eFuse secure_version) only
-- counts up, whoever writes it: otad keeps the maximum it has seen, and
-- a hand edit may not lower it either (delete the row of a device that
-- was replaced instead).

CREATE TRIGGER device_secure_version_up BEFORE UPDATE OF secure_version
	ON device WHEN new.secure_version IS NULL AND
	    old.secure_version IS NOT NULL OR
	    new.secure_version < old.secure_version
	BEGIN SELECT RAISE(ABORT, 'secure_version only counts up'); END;
