-- 009: hybrid push over MQTT.

-- Every trigger that went out (the broker acknowledged it, QoS 1), and
-- nudges an operator asked for that wait for the broker. What is owed is
-- derived from this table and the rollouts, so a restart or a broker
-- outage loses nothing and sends nothing twice.
CREATE TABLE trigger (
	id           INTEGER PRIMARY KEY,
	device       TEXT CHECK (device IS NULL OR length(device) BETWEEN 1 AND 64),
	grp          TEXT CHECK (grp IS NULL OR length(grp) BETWEEN 1 AND 64),
	release      INTEGER REFERENCES release (id), -- NULL: nothing offered
	rollout      INTEGER REFERENCES rollout (id),
	stage        INTEGER,
	reason       TEXT NOT NULL CHECK (reason IN ('rollout', 'forced',
	             'nudge')),
	retained     INTEGER NOT NULL DEFAULT 0 CHECK (retained IN (0, 1)),
	requested_at INTEGER NOT NULL,
	sent_at      INTEGER,  -- NULL: owed
	cleared_at   INTEGER,  -- its retained copy was removed or replaced
	CHECK ((device IS NULL) != (grp IS NULL))
);
CREATE INDEX trigger_device ON trigger (device, release)
	WHERE device IS NOT NULL;
CREATE INDEX trigger_group ON trigger (grp, rollout, stage)
	WHERE grp IS NOT NULL;
CREATE INDEX trigger_owed ON trigger (id) WHERE sent_at IS NULL;
CREATE INDEX trigger_retained ON trigger (id)
	WHERE retained = 1 AND sent_at IS NOT NULL AND cleared_at IS NULL;

-- when a device last spoke over MQTT (telemetry)
ALTER TABLE device ADD COLUMN mqtt_seen INTEGER;

