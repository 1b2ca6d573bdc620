-- +goose Up
-- One row per replication slot loss that an operator accepted with
-- `civicbase recreate-slot`. Changes committed between lost_after and the
-- new slot's consistent point (resume_lsn) may be missing from the event
-- store. resume_from is an event id greater than every event stored before
-- the loss and smaller than every event the new slot produces, so a cursor
-- below it has missed changes. Both resume columns stay NULL until the
-- service has created the new slot.
CREATE TABLE civicbase.gaps (
    id          bigserial PRIMARY KEY,
    slot_name   text NOT NULL,
    detail      text NOT NULL,          -- how the slot was lost, for people
    lost_after  pg_lsn NOT NULL,        -- the slot's checkpoint when the loss was accepted
    last_id     text COLLATE "C",       -- newest stored event then, NULL when there was none
    resume_lsn  pg_lsn,
    resume_from text COLLATE "C",
    accepted_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz             -- when the new slot was created
);

-- At most one accepted loss per slot waits for its new slot.
CREATE UNIQUE INDEX gaps_pending_idx ON civicbase.gaps (slot_name) WHERE resume_from IS NULL;

-- The prune horizon: the greatest id and commit time among the events
-- deleted past the retention period. A cursor below through_id may have
-- missed pruned events. The table holds at most one row.
CREATE TABLE civicbase.pruned (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    through_id   text COLLATE "C" NOT NULL,
    through_time timestamptz NOT NULL,
    pruned_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE civicbase.pruned;
DROP TABLE civicbase.gaps;
