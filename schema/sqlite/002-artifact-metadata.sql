-- 002: what the image says about itself, and what the device runs on.

ALTER TABLE artifact ADD COLUMN project TEXT;        -- descriptor project_name
ALTER TABLE artifact ADD COLUMN idf_ver TEXT;
ALTER TABLE artifact ADD COLUMN desc_version TEXT;   -- descriptor version
ALTER TABLE artifact ADD COLUMN build_date TEXT;     -- descriptor date + time
ALTER TABLE artifact ADD COLUMN secure_version INTEGER NOT NULL DEFAULT 0
	CHECK (secure_version >= 0);
ALTER TABLE artifact ADD COLUMN image_len INTEGER;   -- without a signature sector
-- the appended SHA-256: what a device running this image reports
-- (esp_partition_get_sha256, Arduino's x-ESP32-sketch-sha256)
ALTER TABLE artifact ADD COLUMN app_sha256 TEXT
	CHECK (app_sha256 IS NULL OR length(app_sha256) = 64);
ALTER TABLE artifact ADD COLUMN sig_blocks INTEGER NOT NULL DEFAULT 0;
CREATE INDEX artifact_app_sha256 ON artifact (app_sha256);

-- chip: learned from the running image, or set by the operator
ALTER TABLE device ADD COLUMN chip TEXT;
ALTER TABLE device ADD COLUMN running_sha256 TEXT;

-- a release is for one chip (its artifact's) and maybe one hardware rev
ALTER TABLE release ADD COLUMN chip TEXT;
ALTER TABLE release ADD COLUMN hw_rev TEXT;
UPDATE release SET chip = (SELECT chip FROM artifact
	WHERE sha256 = release.artifact);
DROP INDEX release_version;
CREATE UNIQUE INDEX release_version ON release (version, ifnull(product, ''),
	ifnull(chip, ''), ifnull(hw_rev, ''));
