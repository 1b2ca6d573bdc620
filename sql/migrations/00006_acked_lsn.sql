-- +goose Up
-- The greatest position the service acknowledged to the slot as flushed.
-- The service stores a position here before it sends it to the slot, so a
-- slot whose confirmed_flush_lsn is greater was moved by something else
-- (created again or advanced by hand), and the changes in between were not
-- read. NULL in rows written by versions that sent positions without storing
-- them; the next acknowledgement fills it in.
ALTER TABLE civicbase.checkpoints ADD COLUMN acked_lsn pg_lsn;

-- +goose Down
ALTER TABLE civicbase.checkpoints DROP COLUMN acked_lsn;
