-- 008: rollouts in canary rings with health gates.

ALTER TABLE release ADD COLUMN forced INTEGER NOT NULL DEFAULT 0
	CHECK (forced IN (0, 1));

-- staged = 0: a publish (every matching device at once)
ALTER TABLE rollout ADD COLUMN staged INTEGER NOT NULL DEFAULT 0
	CHECK (staged IN (0, 1));
ALTER TABLE rollout ADD COLUMN stage INTEGER NOT NULL DEFAULT 0
	CHECK (stage >= 0);
ALTER TABLE rollout ADD COLUMN stage_started INTEGER;
ALTER TABLE rollout ADD COLUMN window TEXT CHECK (window IS NULL OR
	window GLOB '[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]');
ALTER TABLE rollout ADD COLUMN days TEXT;
ALTER TABLE rollout ADD COLUMN utc_offset TEXT;
ALTER TABLE rollout ADD COLUMN min_battery INTEGER
	CHECK (min_battery IS NULL OR min_battery BETWEEN 0 AND 100);
-- an offer without a confirmed success after this long counts as failed
ALTER TABLE rollout ADD COLUMN timeout_s INTEGER NOT NULL DEFAULT 600
	CHECK (timeout_s > 0);
ALTER TABLE rollout ADD COLUMN downgrade INTEGER NOT NULL DEFAULT 0
	CHECK (downgrade IN (0, 1));
-- completed and still offered to whoever has not got it: the baseline
ALTER TABLE rollout ADD COLUMN baseline INTEGER NOT NULL DEFAULT 0
	CHECK (baseline IN (0, 1));

CREATE TABLE rollout_stage (
	rollout      INTEGER NOT NULL REFERENCES rollout (id),
	no           INTEGER NOT NULL CHECK (no >= 0),
	grp          TEXT,   -- an explicit group, or NULL for a percentage
	percent      REAL NOT NULL CHECK (percent BETWEEN 0 AND 100),
	soak_s       INTEGER NOT NULL CHECK (soak_s >= 0),
	min_devices  INTEGER NOT NULL CHECK (min_devices >= 0),
	min_success  REAL NOT NULL CHECK (min_success BETWEEN 0 AND 1),
	max_rollback REAL NOT NULL CHECK (max_rollback BETWEEN 0 AND 1),
	max_failure  REAL NOT NULL CHECK (max_failure BETWEEN 0 AND 1),
	max_crash    REAL NOT NULL CHECK (max_crash BETWEEN 0 AND 1),
	PRIMARY KEY (rollout, no)
) WITHOUT ROWID;

-- rings only widen: a later stage never has a smaller share
CREATE TRIGGER rollout_stage_order_i BEFORE INSERT ON rollout_stage
	WHEN EXISTS (SELECT 1 FROM rollout_stage WHERE rollout = new.rollout
	    AND ((no < new.no AND percent > new.percent) OR
	         (no > new.no AND percent < new.percent)))
	BEGIN SELECT RAISE(ABORT, 'stages out of order: rings only widen'); END;
CREATE TRIGGER rollout_stage_order_u BEFORE UPDATE ON rollout_stage
	WHEN EXISTS (SELECT 1 FROM rollout_stage WHERE rollout = new.rollout
	    AND no != old.no
	    AND ((no < new.no AND percent > new.percent) OR
	         (no > new.no AND percent < new.percent)))
	BEGIN SELECT RAISE(ABORT, 'stages out of order: rings only widen'); END;
CREATE TRIGGER rollout_stage_bump_i AFTER INSERT ON rollout_stage
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER rollout_stage_bump_u AFTER UPDATE ON rollout_stage
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER rollout_stage_bump_d AFTER DELETE ON rollout_stage
	BEGIN UPDATE catalog SET generation = generation + 1; END;

-- a stage that does not exist cannot be current
CREATE TRIGGER rollout_stage_exists BEFORE UPDATE OF stage ON rollout
	WHEN new.staged = 1 AND new.stage >=
	    (SELECT count(*) FROM rollout_stage WHERE rollout = new.id)
	BEGIN SELECT RAISE(ABORT, 'no such stage'); END;

-- a change of plan is seen at once and audited, by hand or not
CREATE TRIGGER rollout_plan_u AFTER UPDATE OF stage, window, days,
	utc_offset, min_battery, timeout_s, downgrade, baseline ON rollout
	BEGIN
		UPDATE catalog SET generation = generation + 1;
		INSERT INTO audit (at, actor, what)
		SELECT unixepoch(),
		    ifnull((SELECT actor FROM audit_actor LIMIT 1), 'sql'),
		    'rollout ' || new.id || ' stage ' || old.stage || ' -> ' ||
		    new.stage
		WHERE old.stage IS NOT new.stage;
	END;

-- which stage an offer was made in, whether the whole image went out,
-- and what the device's telemetry said after it updated
ALTER TABLE attempt ADD COLUMN stage INTEGER;
ALTER TABLE attempt ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempt ADD COLUMN delivered_at INTEGER;
ALTER TABLE attempt ADD COLUMN crashed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempt ADD COLUMN brownout INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attempt_rollout ON attempt (rollout, stage, state);
CREATE INDEX attempt_offered_open ON attempt (offered_at)
	WHERE state IN ('offered', 'downloading', 'installed');
CREATE INDEX device_grp ON device (grp) WHERE grp IS NOT NULL;
