-- Canary mode: who answered each request, as in ../00006_canary.sql:
-- 'primary' (every request not routed to a canary), 'candidate' (the canary
-- answered) or 'fallback' (the canary failed and the primary answered), on
-- the prediction and on every pair of that request.

-- +goose Up
ALTER TABLE predictions ADD COLUMN served_by TEXT COLLATE "C" NOT NULL DEFAULT 'primary';
ALTER TABLE shadow_results ADD COLUMN served_by TEXT COLLATE "C" NOT NULL DEFAULT 'primary';
CREATE INDEX predictions_served ON predictions (time_us) WHERE served_by <> 'primary';
CREATE INDEX shadow_results_served ON shadow_results (time_us) WHERE served_by <> 'primary';

-- +goose Down
DROP INDEX shadow_results_served;
DROP INDEX predictions_served;
ALTER TABLE shadow_results DROP COLUMN served_by;
ALTER TABLE predictions DROP COLUMN served_by;
