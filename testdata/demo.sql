-- Demo schema for `civicbase dev` and docker-compose.yml. It creates three
-- related tables with seed rows, so UPDATE and DELETE examples have rows to
-- change.

CREATE TABLE users (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A text primary key, so events show a non-numeric instanceId.
CREATE TABLE user_profiles (
    id         text PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    bio        text,
    interests  text[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name     text NOT NULL,
    status   text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'archived')),
    budget   numeric(12, 2),
    metadata jsonb NOT NULL DEFAULT '{}'
);

INSERT INTO users (email, name) VALUES
    ('grace@example.com', 'Grace Hopper'),
    ('alan@example.com', 'Alan Turing'),
    ('katherine@example.com', 'Katherine Johnson');

INSERT INTO user_profiles (id, user_id, bio, interests)
SELECT 'profile_' || id, id, bio, interests
FROM users
JOIN (VALUES
    ('grace@example.com', 'Wrote the first compiler.', ARRAY['compilers', 'sailing']),
    ('alan@example.com', 'Asks whether machines can think.', ARRAY['hiking'])
) AS p (email, bio, interests) USING (email);

INSERT INTO projects (owner_id, name, status, budget, metadata)
SELECT id, project, status, budget, metadata::jsonb
FROM users
JOIN (VALUES
    ('grace@example.com', 'COBOL revival', 'active', 125000.00, '{"tags": ["legacy", "mainframe"]}'),
    ('alan@example.com', 'Bombe rebuild', 'draft', 9999999999.99, '{"priority": 1}'),
    ('katherine@example.com', 'Orbit calculations', 'archived', NULL, '{}')
) AS p (email, project, status, budget, metadata) USING (email);
