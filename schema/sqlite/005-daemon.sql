-- 005: what the running daemon serves. The controller writes it after
-- every reload and as a heartbeat, so that otactl can wait for a change
-- to be served before it returns.
CREATE TABLE daemon (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	pid        INTEGER NOT NULL,
	generation INTEGER NOT NULL,  -- catalog generation being served
	seen       INTEGER NOT NULL   -- Unix seconds of the last heartbeat
);
