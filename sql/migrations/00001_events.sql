-- +goose Up
-- Events are stored as the exact bytes that consumers receive, so the column
-- type is json (kept verbatim) rather than jsonb (reordered). Ids sort in
-- commit order under byte comparison, hence the "C" collation.
CREATE TABLE civicbase.events (
    id          text COLLATE "C" PRIMARY KEY,
    event       text NOT NULL,
    model       text NOT NULL,
    table_name  text NOT NULL,
    instance_id text,
    commit_lsn  bigint NOT NULL, -- the commit LSN as a number; payload has its text form
    commit_time timestamptz NOT NULL,
    txid        bigint NOT NULL,
    payload     text NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_commit_time_idx ON civicbase.events USING brin (commit_time);

-- One row per replication slot: the end LSN of the last source transaction
-- whose events are all committed here. The slot is never acknowledged past it.
CREATE TABLE civicbase.checkpoints (
    slot_name  text PRIMARY KEY,
    lsn        pg_lsn NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE civicbase.checkpoints;
DROP TABLE civicbase.events;
