-- Canary mode: who answered each request. served_by is 'primary' (every
-- request not routed to a canary), 'candidate' (the canary answered) or
-- 'fallback' (the canary failed and the primary answered), on the
-- prediction and on every pair of that request.
--
-- The writer's insert does not bind served_by yet: the row it comes from is
-- being reworked elsewhere. Until it does, the store records the requests
-- routed to a canary in served (a few per cent of traffic) and these
-- triggers copy the value onto the rows, whichever arrives first. Once the
-- insert binds the column, a later migration drops the triggers and the
-- table; the columns and their meaning stay.

-- +goose Up
ALTER TABLE predictions ADD COLUMN served_by TEXT NOT NULL DEFAULT 'primary';
ALTER TABLE shadow_results ADD COLUMN served_by TEXT NOT NULL DEFAULT 'primary';
-- The report counts canary answers and fallbacks in a window; partial
-- indexes keep that read to the canary's rows.
CREATE INDEX predictions_served ON predictions (time_us) WHERE served_by != 'primary';
CREATE INDEX shadow_results_served ON shadow_results (time_us) WHERE served_by != 'primary';

CREATE TABLE served (
    request_id TEXT    PRIMARY KEY,
    served_by  TEXT    NOT NULL,
    time_us    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX served_time ON served (time_us);

-- +goose StatementBegin
CREATE TRIGGER predictions_served_by AFTER INSERT ON predictions
WHEN EXISTS (SELECT 1 FROM served WHERE request_id = NEW.request_id)
BEGIN
    UPDATE predictions SET served_by = (SELECT served_by FROM served WHERE request_id = NEW.request_id) WHERE id = NEW.id;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER shadow_results_served_by AFTER INSERT ON shadow_results
WHEN EXISTS (SELECT 1 FROM served WHERE request_id = NEW.request_id)
BEGIN
    UPDATE shadow_results SET served_by = (SELECT served_by FROM served WHERE request_id = NEW.request_id) WHERE id = NEW.id;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER served_marks AFTER INSERT ON served
BEGIN
    UPDATE predictions SET served_by = NEW.served_by WHERE request_id = NEW.request_id;
    UPDATE shadow_results SET served_by = NEW.served_by WHERE request_id = NEW.request_id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER served_marks;
DROP TRIGGER shadow_results_served_by;
DROP TRIGGER predictions_served_by;
DROP TABLE served;
DROP INDEX shadow_results_served;
DROP INDEX predictions_served;
ALTER TABLE shadow_results DROP COLUMN served_by;
ALTER TABLE predictions DROP COLUMN served_by;
