-- 007: device tokens. Only the SHA-256 of a token is kept.
ALTER TABLE device ADD COLUMN token_hash TEXT
	CHECK (token_hash IS NULL OR length(token_hash) = 64);
ALTER TABLE device ADD COLUMN token_created INTEGER;
CREATE UNIQUE INDEX device_token ON device (token_hash)
	WHERE token_hash IS NOT NULL;
