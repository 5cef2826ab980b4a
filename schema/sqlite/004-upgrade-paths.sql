-- 004: upgrade paths. A device older than min_from is not offered this
-- release directly but a stepping stone: a release it can take that leads
-- on to this one.
ALTER TABLE release ADD COLUMN min_from TEXT
	CHECK (min_from IS NULL OR length(min_from) BETWEEN 1 AND 64);
