-- +goose NO TRANSACTION
-- +goose Up
-- The queue metrics read each endpoint's oldest pending delivery in event id
-- order. Without this index that lookup reads every pending delivery of the
-- endpoint, or walks its delivered ones in the unique (webhook_id, event_id)
-- index. The index is built concurrently, because the deliveries table is
-- largest when a backlog makes the index matter, and a plain build would
-- block the store's writes for the whole build. A concurrent build that
-- fails leaves an invalid index behind, so it is dropped first.
DROP INDEX CONCURRENTLY IF EXISTS civicbase.deliveries_pending_event_idx;
CREATE INDEX CONCURRENTLY deliveries_pending_event_idx ON civicbase.deliveries (webhook_id, event_id) WHERE status = 'pending';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS civicbase.deliveries_pending_event_idx;
