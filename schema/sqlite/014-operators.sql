-- 014: operators of the management API, and the two-person rule.
--
-- An operator holds a role and a token (only its SHA-256 is kept):
-- viewer reads; operator steers rollouts and devices; admin also manages
-- keys and operators; ci uploads artifacts and creates releases.

CREATE TABLE operator (
	name       TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
	role       TEXT NOT NULL
	           CHECK (role IN ('viewer', 'operator', 'admin', 'ci')),
	token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
	state      TEXT NOT NULL DEFAULT 'active'
	           CHECK (state IN ('active', 'revoked')),
	created    INTEGER NOT NULL,
	revoked_at INTEGER
) WITHOUT ROWID;

-- a revoked operator stays revoked, whoever tries
CREATE TRIGGER operator_revoked_stays BEFORE UPDATE OF state ON operator
	WHEN old.state = 'revoked' AND new.state != 'revoked'
	BEGIN SELECT RAISE(ABORT, 'a revoked operator stays revoked'); END;

-- Who asked for a rollout (or a publish), and who approved it: with
-- rollout_approvals = 2 it starts only once someone else approved it.
ALTER TABLE rollout ADD COLUMN created_by TEXT;
ALTER TABLE rollout ADD COLUMN approved_by TEXT;

-- an approval is by someone other than the creator, whoever writes it
CREATE TRIGGER rollout_approved_by_another BEFORE UPDATE OF approved_by
	ON rollout WHEN new.approved_by IS NOT NULL AND
	    new.approved_by = old.created_by
	BEGIN SELECT RAISE(ABORT, 'a rollout is approved by someone other than its creator'); END;
