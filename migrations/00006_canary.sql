-- Canary mode: who answered each request. served_by is 'primary' (every
-- request not routed to a canary), 'candidate' (the canary answered) or
-- 'fallback' (the canary failed and the primary answered), on the
-- prediction and on every pair of that request. The writer binds it with
-- the rest of the row.

-- +goose Up
ALTER TABLE predictions ADD COLUMN served_by TEXT NOT NULL DEFAULT 'primary';
ALTER TABLE shadow_results ADD COLUMN served_by TEXT NOT NULL DEFAULT 'primary';
-- The report counts canary answers and fallbacks in a window; partial
-- indexes keep that read to the canary's rows.
CREATE INDEX predictions_served ON predictions (time_us) WHERE served_by != 'primary';
CREATE INDEX shadow_results_served ON shadow_results (time_us) WHERE served_by != 'primary';

-- +goose Down
DROP INDEX shadow_results_served;
DROP INDEX predictions_served;
ALTER TABLE shadow_results DROP COLUMN served_by;
ALTER TABLE predictions DROP COLUMN served_by;
