-- 001: devices, artifacts, releases, rollouts, attempts, audit.
-- Times are Unix seconds (UTC). CHECK constraints keep hand edits valid.

CREATE TABLE device (
	id             TEXT PRIMARY KEY
	               CHECK (length(id) BETWEEN 1 AND 64),
	product        TEXT CHECK (product IS NULL OR length(product) <= 64),
	hw_rev         TEXT,
	grp            TEXT,
	version        TEXT CHECK (version IS NULL OR length(version) <= 64),
	address        TEXT,
	first_seen     INTEGER NOT NULL,
	last_seen      INTEGER NOT NULL,
	checks         INTEGER NOT NULL DEFAULT 0,
	-- telemetry, as last reported
	uptime         INTEGER,
	free_heap      INTEGER,
	rssi           INTEGER,
	reset_reason   INTEGER,
	battery        INTEGER CHECK (battery IS NULL OR battery BETWEEN 0 AND 100),
	secure_version INTEGER,
	blocked        INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1))
) WITHOUT ROWID;

-- No index on last_seen or version: every check-in rewrites both, and a
-- scan of 100,000 rows for "otactl device list --offline" costs less than
-- maintaining an index at every check.

CREATE TABLE artifact (
	sha256   TEXT PRIMARY KEY
	         CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
	md5      TEXT NOT NULL CHECK (length(md5) = 32),
	size     INTEGER NOT NULL CHECK (size > 0),
	version  TEXT NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
	product  TEXT,
	chip     TEXT NOT NULL,
	created  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE release (
	id       INTEGER PRIMARY KEY,
	version  TEXT NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
	artifact TEXT NOT NULL REFERENCES artifact (sha256),
	product  TEXT,
	created  INTEGER NOT NULL
);

-- one release per version and product (NULL product = every product)
CREATE UNIQUE INDEX release_version ON release (version, ifnull(product, ''));

-- A rollout is how a release reaches devices. "release publish" makes one
-- that is active for every matching device at once.
CREATE TABLE rollout (
	id       INTEGER PRIMARY KEY,
	release  INTEGER NOT NULL REFERENCES release (id),
	state    TEXT NOT NULL CHECK (state IN ('draft', 'active', 'paused',
	         'halted', 'completed', 'aborted')),
	created  INTEGER NOT NULL,
	started  INTEGER,
	finished INTEGER,
	reason   TEXT
);

CREATE INDEX rollout_state ON rollout (state);

CREATE TABLE attempt (
	id           INTEGER PRIMARY KEY,
	device       TEXT NOT NULL,
	release      INTEGER REFERENCES release (id),
	rollout      INTEGER REFERENCES rollout (id),
	from_version TEXT,
	to_version   TEXT NOT NULL,
	state        TEXT NOT NULL CHECK (state IN ('offered', 'downloading',
	             'installed', 'success', 'rollback', 'failed', 'timeout')),
	reason       TEXT CHECK (reason IS NULL OR length(reason) <= 256),
	offered_at   INTEGER,
	updated_at   INTEGER NOT NULL,
	finished_at  INTEGER
);

CREATE INDEX attempt_device ON attempt (device, id);
-- the attempts still waiting for an outcome, one lookup per check-in
CREATE INDEX attempt_open ON attempt (device)
	WHERE state IN ('offered', 'downloading', 'installed');
CREATE INDEX attempt_release ON attempt (release, state);

CREATE TABLE audit (
	id    INTEGER PRIMARY KEY,
	at    INTEGER NOT NULL,
	actor TEXT NOT NULL,
	what  TEXT NOT NULL
);

-- The daemon rebuilds what it offers when this number moves. Triggers bump
-- it on every change to what can be offered, whoever makes the change
-- (otactl or an operator's own SQL).
CREATE TABLE catalog (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	generation INTEGER NOT NULL
);
INSERT INTO catalog VALUES (1, 1);

CREATE TRIGGER artifact_bump_i AFTER INSERT ON artifact
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER artifact_bump_u AFTER UPDATE ON artifact
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER artifact_bump_d AFTER DELETE ON artifact
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER release_bump_i AFTER INSERT ON release
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER release_bump_u AFTER UPDATE ON release
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER release_bump_d AFTER DELETE ON release
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER rollout_bump_i AFTER INSERT ON rollout
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER rollout_bump_d AFTER DELETE ON rollout
	BEGIN UPDATE catalog SET generation = generation + 1; END;

-- Who is making the change in this transaction: otactl writes its user here
-- and empties it again before it commits; an edit by hand finds it empty.
CREATE TABLE audit_actor (actor TEXT NOT NULL);

-- A state change by hand is recorded like one made through otactl.
CREATE TRIGGER rollout_state_u AFTER UPDATE OF state ON rollout
	WHEN old.state IS NOT new.state
	BEGIN
		UPDATE catalog SET generation = generation + 1;
		INSERT INTO audit (at, actor, what) VALUES (unixepoch(),
		    ifnull((SELECT actor FROM audit_actor LIMIT 1), 'sql'),
		    'rollout ' || new.id || ' state ' || old.state || ' -> ' ||
		    new.state);
	END;
CREATE TRIGGER rollout_other_u AFTER UPDATE OF release, started, finished,
	reason ON rollout
	BEGIN UPDATE catalog SET generation = generation + 1; END;
