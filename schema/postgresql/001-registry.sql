-- The registry in PostgreSQL: the same tables, columns, CHECK constraints
-- and triggers as the SQLite schema has after its migration 015, written
-- once for this dialect. Later changes come as 002, 003, ... here and
-- beside them in schema/sqlite/.
--
-- Times are Unix seconds (bigint), flags 0 or 1 (integer), as in SQLite,
-- so both databases give the same answers to the same queries.

-- SQLite's functions the queries use, with SQLite's meaning
CREATE FUNCTION unixepoch() RETURNS bigint LANGUAGE sql STABLE
	AS $$ SELECT floor(extract(epoch FROM now()))::bigint $$;
-- two-argument max and min: NULL when either is (SQLite's scalar max)
CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint LANGUAGE sql
	IMMUTABLE STRICT AS $$ SELECT greatest(a, b) $$;
CREATE FUNCTION min(a bigint, b bigint) RETURNS bigint LANGUAGE sql
	IMMUTABLE STRICT AS $$ SELECT least(a, b) $$;

-- semver_compare(a, b): the daemon's one total order of version strings
-- (src/semver.c), step for step. Runs of digits compare as numbers of
-- any length.
CREATE FUNCTION otad_cmp_digits(a text, b text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
	a := ltrim(a, '0');
	b := ltrim(b, '0');
	IF a = '' THEN a := '0'; END IF;
	IF b = '' THEN b := '0'; END IF;
	IF length(a) <> length(b) THEN
		RETURN sign(length(a) - length(b));
	END IF;
	RETURN CASE WHEN a COLLATE "C" < b COLLATE "C" THEN -1
		    WHEN a COLLATE "C" > b COLLATE "C" THEN 1 ELSE 0 END;
END $$;

-- identifiers that are not all digits: digit runs as numbers, other runs
-- byte by byte, a digit run first, a prefix before what extends it
CREATE FUNCTION otad_cmp_natural(a text, b text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	ad text; bd text; an text; bn text; c integer; m integer;
BEGIN
	WHILE a <> '' AND b <> '' LOOP
		ad := substring(a FROM '^[0-9]+');
		bd := substring(b FROM '^[0-9]+');
		IF (ad IS NULL) <> (bd IS NULL) THEN
			RETURN CASE WHEN ad IS NOT NULL THEN -1 ELSE 1 END;
		END IF;
		IF ad IS NOT NULL THEN
			c := otad_cmp_digits(ad, bd);
			IF c <> 0 THEN RETURN c; END IF;
			a := substr(a, length(ad) + 1);
			b := substr(b, length(bd) + 1);
		ELSE
			an := substring(a FROM '^[^0-9]+');
			bn := substring(b FROM '^[^0-9]+');
			m := least(length(an), length(bn));
			IF left(an, m) COLLATE "C" < left(bn, m) COLLATE "C" THEN
				RETURN -1;
			END IF;
			IF left(an, m) COLLATE "C" > left(bn, m) COLLATE "C" THEN
				RETURN 1;
			END IF;
			IF length(an) <> length(bn) THEN
				RETURN CASE WHEN length(an) < length(bn) THEN -1
				    ELSE 1 END;
			END IF;
			a := substr(a, length(an) + 1);
			b := substr(b, length(bn) + 1);
		END IF;
	END LOOP;
	RETURN (a <> '')::integer - (b <> '')::integer;
END $$;

-- dot-separated identifiers (SemVer 2.0 section 11.4)
CREATE FUNCTION otad_cmp_idents(a text, b text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	ai text; bi text; anum boolean; bnum boolean; c integer;
BEGIN
	WHILE a <> '' AND b <> '' LOOP
		ai := split_part(a, '.', 1);
		bi := split_part(b, '.', 1);
		anum := ai ~ '^[0-9]+$';
		bnum := bi ~ '^[0-9]+$';
		IF anum AND bnum THEN
			c := otad_cmp_digits(ai, bi);
		ELSIF anum OR bnum THEN
			c := CASE WHEN anum THEN -1 ELSE 1 END;
		ELSE
			c := otad_cmp_natural(ai, bi);
		END IF;
		IF c <> 0 THEN RETURN c; END IF;
		a := substr(a, length(ai) + 1);
		b := substr(b, length(bi) + 1);
		-- "1.0.0-a" < "1.0.0-a.": a separator is more
		IF (a <> '') <> (b <> '') THEN
			RETURN CASE WHEN a <> '' THEN 1 ELSE -1 END;
		END IF;
		IF a <> '' THEN
			a := substr(a, 2);
			b := substr(b, 2);
		END IF;
	END LOOP;
	RETURN (a <> '')::integer - (b <> '')::integer;
END $$;

-- a version as its key: the numeric core (up to three digit runs after an
-- optional v), its rank (0 prerelease, 1 release, 2 post-release) and
-- the identifiers that follow, build metadata dropped
CREATE FUNCTION otad_version_key(s text, OUT has_core boolean,
	OUT core text[], OUT rank integer, OUT rest text)
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	p text := s; n text; part integer; tail text;
BEGIN
	core := ARRAY['0', '0', '0'];
	IF left(p, 1) IN ('v', 'V') AND substr(p, 2, 1) ~ '^[0-9]$' THEN
		p := substr(p, 2);
	END IF;
	IF p !~ '^[0-9]' THEN
		has_core := false;
		rank := 2;
		rest := split_part(s, '+', 1);
		RETURN;
	END IF;
	has_core := true;
	FOR part IN 1..3 LOOP
		n := substring(p FROM '^[0-9]+');
		core[part] := n;
		p := substr(p, length(n) + 1);
		EXIT WHEN part = 3 OR left(p, 1) <> '.' OR
		    substr(p, 2, 1) !~ '^[0-9]$';
		p := substr(p, 2);
	END LOOP;
	tail := split_part(p, '+', 1);
	IF tail = '' THEN
		rank := 1;
		rest := '';
	ELSIF left(tail, 1) IN ('-', '~') THEN
		rank := 0;
		rest := substr(tail, 2);
	ELSE
		rank := 2;
		rest := CASE WHEN left(tail, 1) = '.' THEN substr(tail, 2)
		    ELSE tail END;
	END IF;
END $$;

CREATE FUNCTION semver_compare(a text, b text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	ka record; kb record; i integer; c integer;
BEGIN
	ka := otad_version_key(a);
	kb := otad_version_key(b);
	IF ka.has_core <> kb.has_core THEN
		RETURN CASE WHEN ka.has_core THEN 1 ELSE -1 END;
	END IF;
	IF ka.has_core THEN
		FOR i IN 1..3 LOOP
			c := otad_cmp_digits(ka.core[i], kb.core[i]);
			IF c <> 0 THEN RETURN c; END IF;
		END LOOP;
	END IF;
	IF ka.rank <> kb.rank THEN
		RETURN CASE WHEN ka.rank < kb.rank THEN -1 ELSE 1 END;
	END IF;
	RETURN otad_cmp_idents(ka.rest, kb.rest);
END $$;

-- ring(rollout, device): a device's place in 0..9999, as the daemon
-- computes it (src/stages.c): FNV-1a over "rollout:device", then a final
-- mix. 64-bit unsigned arithmetic in two 32-bit halves, since bigint
-- is signed and must not overflow.
CREATE FUNCTION ring(rollout bigint, device text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	m32 CONSTANT bigint := 4294967295;
	bytes bytea := convert_to(rollout::text || ':' || device, 'UTF8');
	hi bigint := 3421674724;  -- 0xcbf29ce4
	lo bigint := 2216829733;  -- 0x84222325
	t bigint;
	h numeric;
	i integer;
BEGIN
	FOR i IN 0..length(bytes) - 1 LOOP
		lo := lo # get_byte(bytes, i);
		-- h * 0x100000001b3 = h * 0x1b3 + (h << 40)
		t := lo * 435;
		hi := (hi * 435 + (t >> 32) + ((lo & 16777215) << 8)) & m32;
		lo := t & m32;
	END LOOP;
	lo := lo # (hi >> 1);
	h := (hi::numeric * 4294967296 + lo) * 18397679294719823053 %
	    18446744073709551616;
	hi := trunc(h / 4294967296)::bigint;
	lo := (h % 4294967296)::bigint;
	lo := lo # (hi >> 1);
	RETURN ((hi::numeric * 4294967296 + lo) % 10000)::integer;
END $$;

CREATE TABLE device (
	id             text PRIMARY KEY
	               CHECK (length(id) BETWEEN 1 AND 64),
	product        text CHECK (product IS NULL OR length(product) <= 64),
	hw_rev         text,
	grp            text,
	version        text CHECK (version IS NULL OR length(version) <= 64),
	address        text,
	first_seen     bigint NOT NULL,
	last_seen      bigint NOT NULL,
	checks         bigint NOT NULL DEFAULT 0,
	-- telemetry, as last reported
	uptime         bigint,
	free_heap      bigint,
	rssi           bigint,
	reset_reason   bigint,
	battery        bigint CHECK (battery IS NULL OR battery BETWEEN 0 AND 100),
	secure_version bigint,
	blocked        integer NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
	chip           text,
	running_sha256 text,
	deferred       text,
	deferred_at    bigint,
	free_space     bigint,
	token_hash     text CHECK (token_hash IS NULL OR length(token_hash) = 64),
	token_created  bigint,
	mqtt_seen      bigint,
	fs_sha256      text,
	fs_version     text
);
CREATE UNIQUE INDEX device_token ON device (token_hash)
	WHERE token_hash IS NOT NULL;
CREATE INDEX device_grp ON device (grp) WHERE grp IS NOT NULL;

CREATE TABLE artifact (
	sha256   text PRIMARY KEY
	         CHECK (length(sha256) = 64 AND sha256 !~ '[^0-9a-f]'),
	md5      text NOT NULL CHECK (length(md5) = 32),
	size     bigint NOT NULL CHECK (size > 0),
	version  text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
	product  text,
	chip     text NOT NULL,
	created  bigint NOT NULL,
	project  text,
	idf_ver  text,
	desc_version text,
	build_date text,
	secure_version bigint NOT NULL DEFAULT 0 CHECK (secure_version >= 0),
	image_len bigint,
	app_sha256 text CHECK (app_sha256 IS NULL OR length(app_sha256) = 64),
	sig_blocks bigint NOT NULL DEFAULT 0,
	kind     text NOT NULL DEFAULT 'app'
	         CHECK (kind IN ('app', 'spiffs', 'littlefs', 'fatfs'))
);
CREATE INDEX artifact_app_sha256 ON artifact (app_sha256);

-- an artifact's bytes, for every node of a cluster (each keeps a copy)
CREATE TABLE artifact_chunk (
	sha256 text NOT NULL REFERENCES artifact (sha256) ON DELETE CASCADE,
	no     integer NOT NULL CHECK (no >= 0),
	data   bytea NOT NULL CHECK (length(data) BETWEEN 1 AND 1048576),
	PRIMARY KEY (sha256, no)
);
-- images do not compress: kept as they are
ALTER TABLE artifact_chunk ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE release (
	id       bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	version  text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
	artifact text NOT NULL REFERENCES artifact (sha256),
	product  text,
	created  bigint NOT NULL,
	chip     text,
	hw_rev   text,
	min_from text CHECK (min_from IS NULL OR length(min_from) BETWEEN 1 AND 64),
	forced   integer NOT NULL DEFAULT 0 CHECK (forced IN (0, 1)),
	kind     text NOT NULL DEFAULT 'app'
	         CHECK (kind IN ('app', 'spiffs', 'littlefs', 'fatfs'))
);
CREATE UNIQUE INDEX release_version ON release (version,
	coalesce(product, ''), coalesce(chip, ''), coalesce(hw_rev, ''));

CREATE TABLE rollout (
	id       bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	release  bigint NOT NULL REFERENCES release (id),
	state    text NOT NULL CHECK (state IN ('draft', 'active', 'paused',
	         'halted', 'completed', 'aborted')),
	created  bigint NOT NULL,
	started  bigint,
	finished bigint,
	reason   text,
	staged   integer NOT NULL DEFAULT 0 CHECK (staged IN (0, 1)),
	stage    bigint NOT NULL DEFAULT 0 CHECK (stage >= 0),
	stage_started bigint,
	"window" text CHECK ("window" IS NULL OR
	         "window" ~ '^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$'),
	days     text,
	utc_offset text,
	min_battery bigint
	         CHECK (min_battery IS NULL OR min_battery BETWEEN 0 AND 100),
	timeout_s bigint NOT NULL DEFAULT 600 CHECK (timeout_s > 0),
	downgrade integer NOT NULL DEFAULT 0 CHECK (downgrade IN (0, 1)),
	baseline integer NOT NULL DEFAULT 0 CHECK (baseline IN (0, 1)),
	created_by text,
	approved_by text
);
CREATE INDEX rollout_state ON rollout (state);

CREATE TABLE attempt (
	id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	device       text NOT NULL,
	release      bigint REFERENCES release (id),
	rollout      bigint REFERENCES rollout (id),
	from_version text,
	to_version   text NOT NULL,
	state        text NOT NULL CHECK (state IN ('offered', 'downloading',
	             'installed', 'success', 'rollback', 'failed', 'timeout')),
	reason       text CHECK (reason IS NULL OR length(reason) <= 256),
	offered_at   bigint,
	updated_at   bigint NOT NULL,
	finished_at  bigint,
	stage        bigint,
	delivered    integer NOT NULL DEFAULT 0,
	delivered_at bigint,
	crashed      integer NOT NULL DEFAULT 0,
	brownout     integer NOT NULL DEFAULT 0,
	silent       integer NOT NULL DEFAULT 0 CHECK (silent IN (0, 1)),
	inferred     integer NOT NULL DEFAULT 0 CHECK (inferred IN (0, 1)),
	quiet_at     bigint
);
CREATE INDEX attempt_device ON attempt (device, id);
CREATE INDEX attempt_open ON attempt (device)
	WHERE state IN ('offered', 'downloading', 'installed');
CREATE INDEX attempt_release ON attempt (release, state);
CREATE INDEX attempt_rollout ON attempt (rollout, stage, state);
CREATE INDEX attempt_offered_open ON attempt (offered_at)
	WHERE state IN ('offered', 'downloading', 'installed');
CREATE INDEX attempt_finished_bad ON attempt (finished_at)
	WHERE state IN ('rollback', 'failed', 'timeout');

CREATE TABLE audit (
	id    bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	at    bigint NOT NULL,
	actor text NOT NULL,
	what  text NOT NULL
);
-- who the running transaction acts for; empty outside otad's own
CREATE TABLE audit_actor (actor text NOT NULL);

CREATE TABLE catalog (
	id         integer PRIMARY KEY CHECK (id = 1),
	generation bigint NOT NULL
);
INSERT INTO catalog (id, generation) VALUES (1, 1);

-- the otad nodes serving this registry, one row each (host:pid)
CREATE TABLE daemon (
	node       text PRIMARY KEY,
	pid        bigint NOT NULL,
	generation bigint NOT NULL,  -- catalog generation being served
	seen       bigint NOT NULL   -- Unix seconds of the last heartbeat
);

-- the leader's lease, renewed four times a second: a leader silent for
-- leader_timeout (hung, stopped, cut off) loses its session to the next
CREATE TABLE leader (
	id      integer PRIMARY KEY CHECK (id = 1),
	node    text NOT NULL,
	backend integer NOT NULL,    -- its session's pg_backend_pid()
	renewed timestamptz NOT NULL -- by the database's clock
);

CREATE TABLE signing_key (
	name        text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
	algo        text NOT NULL
	            CHECK (algo IN ('ecdsa-p256', 'ed25519', 'rsa-3072',
	            'ecdsa-p192', 'ecdsa-p384')),
	purpose     text NOT NULL CHECK (purpose IN ('artifact', 'secure-boot')),
	public_key  text NOT NULL,               -- PEM
	fingerprint text NOT NULL,               -- SHA-256 of the DER key
	server_held integer NOT NULL DEFAULT 0 CHECK (server_held IN (0, 1)),
	state       text NOT NULL DEFAULT 'active'
	            CHECK (state IN ('active', 'retired', 'revoked')),
	created     bigint NOT NULL,
	revoked_at  bigint,
	CHECK (purpose = 'artifact' AND algo IN ('ecdsa-p256', 'ed25519') OR
	    purpose = 'secure-boot' AND algo IN ('rsa-3072', 'ecdsa-p192',
	    'ecdsa-p256', 'ecdsa-p384')),
	UNIQUE (fingerprint, purpose)
);

CREATE TABLE signature (
	artifact text NOT NULL REFERENCES artifact (sha256),
	key      text NOT NULL REFERENCES signing_key (name),
	sig      bytea NOT NULL CHECK (length(sig) BETWEEN 1 AND 512),
	created  bigint NOT NULL,
	PRIMARY KEY (artifact, key)
);

CREATE TABLE rollout_stage (
	rollout      bigint NOT NULL REFERENCES rollout (id),
	no           bigint NOT NULL CHECK (no >= 0),
	grp          text,   -- an explicit group, or NULL for a percentage
	percent      double precision NOT NULL CHECK (percent BETWEEN 0 AND 100),
	soak_s       bigint NOT NULL CHECK (soak_s >= 0),
	min_devices  bigint NOT NULL CHECK (min_devices >= 0),
	min_success  double precision NOT NULL
	             CHECK (min_success BETWEEN 0 AND 1),
	max_rollback double precision NOT NULL
	             CHECK (max_rollback BETWEEN 0 AND 1),
	max_failure  double precision NOT NULL
	             CHECK (max_failure BETWEEN 0 AND 1),
	max_crash    double precision NOT NULL CHECK (max_crash BETWEEN 0 AND 1),
	PRIMARY KEY (rollout, no)
);

CREATE TABLE trigger (
	id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	device       text CHECK (device IS NULL OR length(device) BETWEEN 1 AND 64),
	grp          text CHECK (grp IS NULL OR length(grp) BETWEEN 1 AND 64),
	release      bigint REFERENCES release (id), -- NULL: nothing offered
	rollout      bigint REFERENCES rollout (id),
	stage        bigint,
	reason       text NOT NULL CHECK (reason IN ('rollout', 'forced',
	             'nudge')),
	retained     integer NOT NULL DEFAULT 0 CHECK (retained IN (0, 1)),
	requested_at bigint NOT NULL,
	sent_at      bigint,  -- NULL: owed
	cleared_at   bigint,  -- its retained copy was removed or replaced
	CHECK ((device IS NULL) <> (grp IS NULL))
);
CREATE INDEX trigger_device ON trigger (device, release)
	WHERE device IS NOT NULL;
CREATE INDEX trigger_group ON trigger (grp, rollout, stage)
	WHERE grp IS NOT NULL;
CREATE INDEX trigger_owed ON trigger (id) WHERE sent_at IS NULL;
CREATE INDEX trigger_retained ON trigger (id)
	WHERE retained = 1 AND sent_at IS NOT NULL AND cleared_at IS NULL;

CREATE TABLE operator (
	name       text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
	role       text NOT NULL
	           CHECK (role IN ('viewer', 'operator', 'admin', 'ci')),
	token_hash text NOT NULL UNIQUE CHECK (length(token_hash) = 64),
	state      text NOT NULL DEFAULT 'active'
	           CHECK (state IN ('active', 'revoked')),
	created    bigint NOT NULL,
	revoked_at bigint
);

-- Every change to what is offered moves the catalog generation, which
-- every node watches (and is told of: NOTIFY otad_catalog), so a change
-- by any node, by otactl or by hand in psql is served everywhere.
CREATE FUNCTION otad_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE catalog SET generation = generation + 1;
	PERFORM pg_notify('otad_catalog', '');
	RETURN NULL;
END $$;

CREATE FUNCTION otad_actor() RETURNS text LANGUAGE sql STABLE AS
	$$ SELECT coalesce((SELECT actor FROM audit_actor LIMIT 1), 'sql') $$;

CREATE TRIGGER artifact_bump AFTER INSERT OR UPDATE OR DELETE ON artifact
	FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();
CREATE TRIGGER release_bump AFTER INSERT OR UPDATE OR DELETE ON release
	FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();
CREATE TRIGGER rollout_bump_i AFTER INSERT OR DELETE ON rollout
	FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();
CREATE TRIGGER rollout_other_u AFTER UPDATE OF release, started, finished,
	reason ON rollout FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();
CREATE TRIGGER signature_bump AFTER INSERT OR DELETE ON signature
	FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();
CREATE TRIGGER rollout_stage_bump AFTER INSERT OR UPDATE OR DELETE
	ON rollout_stage FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();
CREATE TRIGGER signing_key_bump AFTER INSERT OR DELETE ON signing_key
	FOR EACH STATEMENT EXECUTE FUNCTION otad_bump();

-- a rollout's state and stage changes are audited, whoever makes them
CREATE FUNCTION otad_rollout_state_u() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE catalog SET generation = generation + 1;
	PERFORM pg_notify('otad_catalog', '');
	INSERT INTO audit (at, actor, what) VALUES (unixepoch(), otad_actor(),
	    'rollout ' || new.id || ' state ' || old.state || ' -> ' ||
	    new.state);
	RETURN NULL;
END $$;
CREATE TRIGGER rollout_state_u AFTER UPDATE OF state ON rollout
	FOR EACH ROW WHEN (old.state IS DISTINCT FROM new.state)
	EXECUTE FUNCTION otad_rollout_state_u();

CREATE FUNCTION otad_rollout_plan_u() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE catalog SET generation = generation + 1;
	PERFORM pg_notify('otad_catalog', '');
	IF old.stage IS DISTINCT FROM new.stage THEN
		INSERT INTO audit (at, actor, what) VALUES (unixepoch(),
		    otad_actor(), 'rollout ' || new.id || ' stage ' ||
		    old.stage || ' -> ' || new.stage);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER rollout_plan_u AFTER UPDATE OF stage, "window", days,
	utc_offset, min_battery, timeout_s, downgrade, baseline ON rollout
	FOR EACH ROW EXECUTE FUNCTION otad_rollout_plan_u();

CREATE FUNCTION otad_signing_key_state_u() RETURNS trigger LANGUAGE plpgsql
AS $$
BEGIN
	UPDATE catalog SET generation = generation + 1;
	PERFORM pg_notify('otad_catalog', '');
	INSERT INTO audit (at, actor, what) VALUES (unixepoch(), otad_actor(),
	    'key ' || new.name || ' state ' || old.state || ' -> ' ||
	    new.state);
	RETURN NULL;
END $$;
CREATE TRIGGER signing_key_state_u AFTER UPDATE OF state ON signing_key
	FOR EACH ROW WHEN (old.state IS DISTINCT FROM new.state)
	EXECUTE FUNCTION otad_signing_key_state_u();

-- What a hand edit may not do, refused with SQLite's words.
CREATE FUNCTION otad_refuse(why text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION USING MESSAGE = why, ERRCODE = 'P0001';
END $$;

CREATE FUNCTION otad_rollout_stage_i() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM rollout_stage WHERE rollout = new.rollout
	    AND ((no < new.no AND percent > new.percent) OR
	         (no > new.no AND percent < new.percent))) THEN
		PERFORM otad_refuse('stages out of order: rings only widen');
	END IF;
	IF new.no <> (SELECT count(*) FROM rollout_stage
	    WHERE rollout = new.rollout) THEN
		PERFORM otad_refuse('stages go 0, 1, 2: add the next one');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER rollout_stage_i BEFORE INSERT ON rollout_stage
	FOR EACH ROW EXECUTE FUNCTION otad_rollout_stage_i();

CREATE FUNCTION otad_rollout_stage_u() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF new.rollout <> old.rollout OR new.no <> old.no THEN
		PERFORM otad_refuse('a stage keeps its rollout and number');
	END IF;
	IF EXISTS (SELECT 1 FROM rollout_stage WHERE rollout = new.rollout
	    AND no <> old.no
	    AND ((no < new.no AND percent > new.percent) OR
	         (no > new.no AND percent < new.percent))) THEN
		PERFORM otad_refuse('stages out of order: rings only widen');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER rollout_stage_u BEFORE UPDATE ON rollout_stage
	FOR EACH ROW EXECUTE FUNCTION otad_rollout_stage_u();

CREATE FUNCTION otad_rollout_stage_d() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM rollout_stage WHERE rollout = old.rollout
	    AND no > old.no) OR EXISTS (SELECT 1 FROM rollout WHERE
	    id = old.rollout AND staged = 1 AND stage >= old.no) THEN
		PERFORM otad_refuse('only the last stage, not reached, goes');
	END IF;
	RETURN old;
END $$;
CREATE TRIGGER rollout_stage_remove BEFORE DELETE ON rollout_stage
	FOR EACH ROW EXECUTE FUNCTION otad_rollout_stage_d();

-- named as in SQLite, so the same hand edit (DROP TRIGGER ...) finds them
CREATE FUNCTION otad_rollout_starts_at_0() RETURNS trigger LANGUAGE plpgsql
AS $$
BEGIN
	IF new.staged = 1 AND new.stage <> 0 THEN
		PERFORM otad_refuse('a new rollout starts at stage 0');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER rollout_stage_exists_i BEFORE INSERT ON rollout
	FOR EACH ROW EXECUTE FUNCTION otad_rollout_starts_at_0();

CREATE FUNCTION otad_rollout_stage_exists() RETURNS trigger LANGUAGE plpgsql
AS $$
BEGIN
	IF new.staged = 1 AND new.state IN ('draft', 'active', 'paused')
	    AND NOT EXISTS (SELECT 1 FROM rollout_stage
	    WHERE rollout = new.id AND no = new.stage) THEN
		PERFORM otad_refuse('no such stage');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER rollout_stage_exists BEFORE UPDATE ON rollout
	FOR EACH ROW EXECUTE FUNCTION otad_rollout_stage_exists();

CREATE FUNCTION otad_rollout_approved() RETURNS trigger LANGUAGE plpgsql
AS $$
BEGIN
	IF new.approved_by IS NOT NULL AND
	    new.approved_by = old.created_by THEN
		PERFORM otad_refuse('a rollout is approved by someone other '
		    'than its creator');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER rollout_approved_by_another BEFORE UPDATE OF approved_by
	ON rollout FOR EACH ROW EXECUTE FUNCTION otad_rollout_approved();

CREATE FUNCTION otad_device_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF new.secure_version IS NULL AND old.secure_version IS NOT NULL OR
	    new.secure_version < old.secure_version THEN
		PERFORM otad_refuse('secure_version only counts up');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER device_secure_version_up BEFORE UPDATE OF secure_version
	ON device FOR EACH ROW EXECUTE FUNCTION otad_device_check();

-- a release is of its artifact's kind: set so when created, kept so after
CREATE FUNCTION otad_release_kind() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	k text := (SELECT kind FROM artifact WHERE sha256 = new.artifact);
BEGIN
	IF k IS NOT NULL AND new.kind IS DISTINCT FROM k THEN
		IF TG_OP = 'INSERT' THEN
			new.kind := k;
		ELSE
			PERFORM otad_refuse('a release is of its artifact''s '
			    'kind');
		END IF;
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER release_kind BEFORE INSERT OR UPDATE OF kind, artifact
	ON release FOR EACH ROW EXECUTE FUNCTION otad_release_kind();

CREATE FUNCTION otad_revoked_stays() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF old.state = 'revoked' AND new.state <> 'revoked' THEN
		PERFORM otad_refuse(CASE TG_TABLE_NAME WHEN 'operator' THEN
		    'a revoked operator stays revoked' ELSE
		    'a revoked key stays revoked' END);
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER signing_key_revoked_stays BEFORE UPDATE OF state
	ON signing_key FOR EACH ROW EXECUTE FUNCTION otad_revoked_stays();
CREATE TRIGGER operator_revoked_stays BEFORE UPDATE OF state ON operator
	FOR EACH ROW EXECUTE FUNCTION otad_revoked_stays();

CREATE FUNCTION otad_attempt_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF new.inferred = 1 AND new.state NOT IN ('success', 'rollback',
	    'failed') THEN
		PERFORM otad_refuse('only a finished attempt has an inferred '
		    'outcome');
	END IF;
	RETURN new;
END $$;
CREATE TRIGGER attempt_inferred_finished BEFORE UPDATE OF inferred
	ON attempt FOR EACH ROW EXECUTE FUNCTION otad_attempt_check();
