-- 021: telemetry kept as a time series, and stages that compare it.
-- Every report and MQTT telemetry message that says something of the
-- device's health (uptime, free heap, RSSI, reset reason, numbers under
-- "metrics") is a sample, at most one a device per telemetry_interval,
-- kept for telemetry_retention. The version is what the device ran then,
-- which tells the devices a rollout updated from those it did not.
CREATE TABLE telemetry (
	device       TEXT NOT NULL,
	at           INTEGER NOT NULL,
	version      TEXT,
	uptime       INTEGER,
	free_heap    INTEGER,
	rssi         INTEGER,
	reset_reason INTEGER,
	-- a JSON object of the numbers the device sent under "metrics"
	metrics      TEXT
);
CREATE INDEX telemetry_device_at ON telemetry (device, at);
CREATE INDEX telemetry_at ON telemetry (at);
-- a stage's comparisons as written ("heap_drop<=20%,resets<=2x")
ALTER TABLE rollout_stage ADD COLUMN compare TEXT;
