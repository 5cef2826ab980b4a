-- 012: filesystem images next to apps. Arduino's HTTPUpdate asks for an
-- image by the partition it writes (x-ESP32-mode: sketch, spiffs,
-- littlefs, fatfs, flashfs); an artifact says which it is, and a release
-- is offered only to requests for its kind. A filesystem image is for any
-- chip (chip '').

ALTER TABLE artifact ADD COLUMN kind TEXT NOT NULL DEFAULT 'app'
	CHECK (kind IN ('app', 'spiffs', 'littlefs', 'fatfs'));
ALTER TABLE release ADD COLUMN kind TEXT NOT NULL DEFAULT 'app'
	CHECK (kind IN ('app', 'spiffs', 'littlefs', 'fatfs'));

-- a release is of its artifact's kind, whoever writes the row
CREATE TRIGGER release_kind_i AFTER INSERT ON release
	WHEN EXISTS (SELECT 1 FROM artifact WHERE sha256 = new.artifact) AND
	    new.kind IS NOT (SELECT kind FROM artifact
	    WHERE sha256 = new.artifact)
	BEGIN UPDATE release SET kind = (SELECT kind FROM artifact
	    WHERE sha256 = new.artifact) WHERE id = new.id; END;
CREATE TRIGGER release_kind_u BEFORE UPDATE OF kind, artifact ON release
	WHEN EXISTS (SELECT 1 FROM artifact WHERE sha256 = new.artifact) AND
	    new.kind IS NOT (SELECT kind FROM artifact
	    WHERE sha256 = new.artifact)
	BEGIN SELECT RAISE(ABORT, 'a release is of its artifact''s kind'); END;

-- the filesystem image a device was last sent whole, and its version: what
-- a device that sends no filesystem version is taken to have
ALTER TABLE device ADD COLUMN fs_sha256 TEXT;
ALTER TABLE device ADD COLUMN fs_version TEXT;
