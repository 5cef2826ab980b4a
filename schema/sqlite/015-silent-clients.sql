-- 015: devices whose update library never reports (esp32FOTA,
-- ESP32-OTA-Pull, ESPHome, esp_ghota), and outcomes otad inferred.
--
-- silent: the attempt was taken through a library's manifest; its
-- outcome can only be inferred (or reported by MQTT telemetry, which
-- then wins). inferred: how this attempt's outcome was learned, so that
-- rollout status and /metrics show inferred and reported outcomes apart.
ALTER TABLE attempt ADD COLUMN silent INTEGER NOT NULL DEFAULT 0
	CHECK (silent IN (0, 1));
ALTER TABLE attempt ADD COLUMN inferred INTEGER NOT NULL DEFAULT 0
	CHECK (inferred IN (0, 1));
-- a silent device's first poll after its image went out and the soak
-- passed: a library fetches right after the poll that lists what it
-- lacks, so only a later poll without a fetch says the image stayed
ALTER TABLE attempt ADD COLUMN quiet_at INTEGER;

-- only a finished attempt has an outcome to have inferred
CREATE TRIGGER attempt_inferred_finished BEFORE UPDATE OF inferred ON attempt
	WHEN new.inferred = 1 AND new.state NOT IN ('success', 'rollback',
	    'failed')
	BEGIN SELECT RAISE(ABORT, 'only a finished attempt has an inferred outcome'); END;

-- the console's fleet page: what failed or rolled back lately, at once
CREATE INDEX attempt_finished_bad ON attempt (finished_at)
	WHERE state IN ('rollback', 'failed', 'timeout');
