-- 006: why a device was last not sent a newer release (chip, space, ...),
-- so that operators see it instead of a device failing, and the OTA slot
-- size Arduino clients report.
ALTER TABLE device ADD COLUMN deferred TEXT;
ALTER TABLE device ADD COLUMN deferred_at INTEGER;
ALTER TABLE device ADD COLUMN free_space INTEGER;
