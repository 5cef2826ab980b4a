-- Delta patches shared by the nodes of a cluster. The leader builds a
-- patch once; every node fetches it from here into its own store and
-- verifies it (applied to its base it must give the target) before it
-- serves it. A node asked for a patch that nobody built yet records the
-- want, so that the leader builds it even when no device asked the
-- leader itself. When no node offers the target any longer, the leader
-- drops its patches.
CREATE TABLE patch (
	base    text NOT NULL REFERENCES artifact (sha256) ON DELETE CASCADE,
	target  text NOT NULL REFERENCES artifact (sha256) ON DELETE CASCADE,
	state   text NOT NULL CHECK (state IN ('wanted', 'built', 'failed')),
	sha256  text CHECK (sha256 ~ '^[0-9a-f]{64}$'), -- of the container
	size    bigint CHECK (size > 0),
	changed bigint NOT NULL,
	PRIMARY KEY (base, target),
	CHECK (base <> target),
	-- a built patch says what it is; the others have no bytes
	CHECK ((state = 'built') = (sha256 IS NOT NULL AND size IS NOT NULL))
);

CREATE TABLE patch_chunk (
	base   text NOT NULL,
	target text NOT NULL,
	no     integer NOT NULL CHECK (no >= 0),
	data   bytea NOT NULL CHECK (length(data) BETWEEN 1 AND 1048576),
	PRIMARY KEY (base, target, no),
	FOREIGN KEY (base, target) REFERENCES patch (base, target)
	    ON DELETE CASCADE
);
-- patches are compressed already
ALTER TABLE patch_chunk ALTER COLUMN data SET STORAGE EXTERNAL;
