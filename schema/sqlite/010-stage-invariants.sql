-- 010: a staged rollout's current stage always exists, whatever sequence
-- of statements led there. 008 checked only updates naming the stage
-- column, so "SET staged = 0, stage = 9" then "SET staged = 1" got by:
-- check the row an update leaves, whichever columns it named. A rollout
-- that no longer offers anything (halted, aborted, completed) may keep a
-- stage it cannot stand on, so the controller can still halt one.

DROP TRIGGER rollout_stage_exists;
CREATE TRIGGER rollout_stage_exists BEFORE UPDATE ON rollout
	WHEN new.staged = 1 AND new.state IN ('draft', 'active', 'paused')
	AND NOT EXISTS (SELECT 1 FROM rollout_stage
	    WHERE rollout = new.id AND no = new.stage)
	BEGIN SELECT RAISE(ABORT, 'no such stage'); END;
CREATE TRIGGER rollout_stage_exists_i BEFORE INSERT ON rollout
	WHEN new.staged = 1 AND new.stage != 0
	BEGIN SELECT RAISE(ABORT, 'a new rollout starts at stage 0'); END;

-- stages are numbered 0, 1, 2, ... without gaps: added at the end,
-- removed from the end, and never one that a rollout stands on
CREATE TRIGGER rollout_stage_append BEFORE INSERT ON rollout_stage
	WHEN new.no != (SELECT count(*) FROM rollout_stage
	    WHERE rollout = new.rollout)
	BEGIN SELECT RAISE(ABORT, 'stages go 0, 1, 2: add the next one');
	END;
CREATE TRIGGER rollout_stage_renumber BEFORE UPDATE OF rollout, no
	ON rollout_stage WHEN new.rollout != old.rollout OR new.no != old.no
	BEGIN SELECT RAISE(ABORT, 'a stage keeps its rollout and number');
	END;
CREATE TRIGGER rollout_stage_remove BEFORE DELETE ON rollout_stage
	WHEN EXISTS (SELECT 1 FROM rollout_stage WHERE rollout = old.rollout
	    AND no > old.no) OR EXISTS (SELECT 1 FROM rollout WHERE
	    id = old.rollout AND staged = 1 AND stage >= old.no)
	BEGIN SELECT RAISE(ABORT, 'only the last stage, not reached, goes');
	END;
