-- +goose Up
-- Registered webhook endpoints. events holds the subscription patterns:
-- "*", an event name ("data.updated", "project.status_changed"), or a model
-- pattern ("UserProfile.updated", "UserProfile.*").
CREATE TABLE civicbase.webhooks (
    id                   text PRIMARY KEY,
    url                  text NOT NULL,
    events               text[] NOT NULL,
    description          text NOT NULL DEFAULT '',
    -- Secrets are stored as "plain:<secret>" or, when CIVICBASE_ENCRYPTION_KEY
    -- is set, "aesgcm:<base64 nonce and ciphertext>".
    secret               text NOT NULL,
    previous_secret      text,
    previous_expires_at  timestamptz,
    active               boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    failing_since        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- One row per event per matching endpoint, created in the transaction that
-- stores the event. A delivery is due when status is pending and
-- next_attempt_at has passed; a worker that claims one pushes
-- next_attempt_at forward by a lease, so a crashed worker's claim expires.
CREATE TABLE civicbase.deliveries (
    id               bigserial PRIMARY KEY,
    webhook_id       text NOT NULL REFERENCES civicbase.webhooks (id) ON DELETE CASCADE,
    event_id         text COLLATE "C" NOT NULL,
    -- table and primary key of the changed row: deliveries with the same
    -- row_key reach an endpoint in event id order.
    row_key          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Only for deliveries without a stored event, such as webhook.test.
    payload          text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX deliveries_due_idx ON civicbase.deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX deliveries_row_idx ON civicbase.deliveries (webhook_id, row_key, event_id) WHERE status = 'pending';

CREATE TABLE civicbase.delivery_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES civicbase.deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL,
    status_code  int,
    duration_ms  double precision NOT NULL,
    error        text,
    response     text
);

CREATE INDEX delivery_attempts_delivery_idx ON civicbase.delivery_attempts (delivery_id, id);

-- +goose Down
DROP TABLE civicbase.delivery_attempts;
DROP TABLE civicbase.deliveries;
DROP TABLE civicbase.webhooks;
