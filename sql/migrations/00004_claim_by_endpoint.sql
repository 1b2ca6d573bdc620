-- +goose Up
-- Claims take due deliveries endpoint by endpoint, oldest due first, so the
-- due index leads with the endpoint.
CREATE INDEX deliveries_endpoint_due_idx ON civicbase.deliveries (webhook_id, next_attempt_at, id) WHERE status = 'pending';
DROP INDEX civicbase.deliveries_due_idx;
-- The claim looks up earlier pending deliveries of a row by row_key first.
-- Led by webhook_id, the index let the planner scan every pending delivery
-- of the endpoint for each candidate when its statistics were stale.
DROP INDEX civicbase.deliveries_row_idx;
CREATE INDEX deliveries_row_idx ON civicbase.deliveries (row_key, webhook_id, event_id) WHERE status = 'pending';

-- +goose Down
DROP INDEX civicbase.deliveries_row_idx;
CREATE INDEX deliveries_row_idx ON civicbase.deliveries (webhook_id, row_key, event_id) WHERE status = 'pending';
CREATE INDEX deliveries_due_idx ON civicbase.deliveries (next_attempt_at, id) WHERE status = 'pending';
DROP INDEX civicbase.deliveries_endpoint_due_idx;
