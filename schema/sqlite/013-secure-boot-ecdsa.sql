-- 013: Secure Boot v2 keys of every scheme a bootloader verifies: RSA-3072
-- and ECDSA P-192, P-256 and P-384 (their eFuse digests are computed from
-- the public key when needed). A CHECK cannot change in place: the table
-- is built anew and the rows copied (foreign keys are off meanwhile and
-- checked before this commits). Its triggers go with the old table and
-- are made again.

CREATE TABLE signing_key_new (
	name        TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
	algo        TEXT NOT NULL
	            CHECK (algo IN ('ecdsa-p256', 'ed25519', 'rsa-3072',
	            'ecdsa-p192', 'ecdsa-p384')),
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
	CHECK (purpose = 'artifact' AND algo IN ('ecdsa-p256', 'ed25519') OR
	    purpose = 'secure-boot' AND algo IN ('rsa-3072', 'ecdsa-p192',
	    'ecdsa-p256', 'ecdsa-p384')),
	UNIQUE (fingerprint, purpose)
) WITHOUT ROWID;

INSERT INTO signing_key_new (name, algo, purpose, public_key, fingerprint,
    server_held, state, created, revoked_at)
	SELECT name, algo, purpose, public_key, fingerprint, server_held,
	    state, created, revoked_at FROM signing_key;
DROP TABLE signing_key;
ALTER TABLE signing_key_new RENAME TO signing_key;

-- what is offered depends on which keys are trusted
CREATE TRIGGER signing_key_bump_i AFTER INSERT ON signing_key
	BEGIN UPDATE catalog SET generation = generation + 1; END;
CREATE TRIGGER signing_key_bump_d AFTER DELETE ON signing_key
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
