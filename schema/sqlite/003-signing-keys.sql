-- 003: key slots and artifact signatures.

CREATE TABLE signing_key (
	name        TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
	algo        TEXT NOT NULL
	            CHECK (algo IN ('ecdsa-p256', 'ed25519', 'rsa-3072')),
	-- artifact: signs images for devices; secure-boot: the fleet's
	-- Secure Boot v2 keys, which images must carry a block from
	purpose     TEXT NOT NULL CHECK (purpose IN ('artifact', 'secure-boot')),
	public_key  TEXT NOT NULL,               -- PEM
	fingerprint TEXT NOT NULL,               -- SHA-256 of the DER key
	server_held INTEGER NOT NULL DEFAULT 0 CHECK (server_held IN (0, 1)),
	state       TEXT NOT NULL DEFAULT 'active'
	            CHECK (state IN ('active', 'retired', 'revoked')),
	created     INTEGER NOT NULL,
	revoked_at  INTEGER,
	CHECK ((purpose = 'secure-boot') = (algo = 'rsa-3072')),
	UNIQUE (fingerprint, purpose)
) WITHOUT ROWID;

CREATE TABLE signature (
	artifact TEXT NOT NULL REFERENCES artifact (sha256),
	key      TEXT NOT NULL REFERENCES signing_key (name),
	sig      BLOB NOT NULL CHECK (length(sig) BETWEEN 1 AND 512),
	created  INTEGER NOT NULL,
	PRIMARY KEY (artifact, key)
) WITHOUT ROWID;

-- what is offered depends on which keys are trusted
CREATE TRIGGER signing_key_bump_i AFTER INSERT ON signing_key
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER signing_key_bump_d AFTER DELETE ON signing_key
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER signature_bump_i AFTER INSERT ON signature
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER signature_bump_d AFTER DELETE ON signature
	BEGIN UPDATE catalog SET generation = generation + 1; END;

-- a revoked key stays revoked, whoever tries
CREATE TRIGGER signing_key_revoked_stays BEFORE UPDATE OF state ON signing_key
	WHEN old.state = 'revoked' AND new.state != 'revoked'
	BEGIN SELECT RAISE(ABORT, 'a revoked key stays revoked'); END;

-- every state change is audited, by otactl or by hand
CREATE TRIGGER signing_key_state_u AFTER UPDATE OF state ON signing_key
	WHEN old.state IS NOT new.state
	BEGIN
		UPDATE catalog SET generation = generation + 1;
		INSERT INTO audit (at, actor, what) VALUES (unixepoch(),
		    ifnull((SELECT actor FROM audit_actor LIMIT 1), 'sql'),
		    'key ' || new.name || ' state ' || old.state || ' -> ' ||
		    new.state);
	END;
