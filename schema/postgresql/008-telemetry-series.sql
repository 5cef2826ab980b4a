-- Telemetry as a time series (as schema/sqlite/021-telemetry-series.sql).
CREATE TABLE telemetry (
	device       text NOT NULL,
	at           bigint NOT NULL,
	version      text,
	uptime       bigint,
	free_heap    bigint,
	rssi         bigint,
	reset_reason bigint,
	metrics      text
);
CREATE INDEX telemetry_device_at ON telemetry (device, at);
CREATE INDEX telemetry_at ON telemetry (at);
ALTER TABLE rollout_stage ADD COLUMN compare text;
-- metric(metrics, name): one number of a sample's metrics, or NULL
CREATE FUNCTION metric(m text, name text) RETURNS double precision
	LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN jsonb_typeof(m::jsonb -> name) = 'number'
	THEN (m::jsonb ->> name)::double precision END $$;
