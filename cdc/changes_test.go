package cdc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
)

const profilesSchema = `
CREATE TABLE user_profiles (
	id text PRIMARY KEY,
	name text NOT NULL,
	bio text,
	interests text[],
	score int
);`

func TestUpdateReportsOnlyChangedColumn(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")

	b.exec(t, `INSERT INTO user_profiles VALUES ('profile_123', 'Ada', 'hi', '{hiking}', 1)`)
	b.exec(t, `UPDATE user_profiles SET interests = '{hiking,photography}' WHERE id = 'profile_123'`)
	events := b.rawEvents(t, 2)

	require.Len(t, events, 2)
	require.Contains(t, events[0], `"event":"data.created","model":"UserProfile","table":"public.user_profiles","instanceId":"profile_123",`+
		`"changes":{"id":"profile_123","name":"Ada","bio":"hi","interests":["hiking"],"score":1},"timestamp":`)
	require.Contains(t, events[1], `"event":"data.updated","model":"UserProfile","table":"public.user_profiles","instanceId":"profile_123",`+
		`"changes":{"interests":["hiking","photography"]},"old":{"interests":["hiking"]},"timestamp":`)
}

func TestUnchangedToastValueIsAbsent(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")
	big := strings.Repeat("lorem ipsum dolor sit amet ", 40000) // about 1 MB

	b.exec(t, `INSERT INTO user_profiles VALUES ('p1', 'Ada', $1, NULL, 1)`, big)
	b.exec(t, `UPDATE user_profiles SET score = 2 WHERE id = 'p1'`)
	events := b.waitEvents(t, 2)

	require.Equal(t, big, events[0]["changes"].(map[string]any)["bio"])
	update := events[1]
	require.Equal(t, map[string]any{"score": float64(2)}, update["changes"])
	require.Equal(t, map[string]any{"score": float64(1)}, update["old"])
	require.NotContains(t, update, "unavailable")
}

func TestPrimaryKeyUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")

	b.exec(t, `INSERT INTO user_profiles VALUES ('p1', 'Ada', NULL, NULL, 1)`)
	b.exec(t, `UPDATE user_profiles SET id = 'p2' WHERE id = 'p1'`)
	events := b.waitEvents(t, 2)

	require.Equal(t, "p2", events[1]["instanceId"])
	require.Equal(t, map[string]any{"id": "p2"}, events[1]["changes"])
	require.Equal(t, map[string]any{"id": "p1"}, events[1]["old"])
}

func TestDeleteCarriesOldRow(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")

	b.exec(t, `INSERT INTO user_profiles VALUES ('p1', 'Ada', NULL, '{a,b}', 7)`)
	b.exec(t, `DELETE FROM user_profiles WHERE id = 'p1'`)
	events := b.waitEvents(t, 2)

	del := events[1]
	require.Equal(t, "data.deleted", del["event"])
	require.Equal(t, "p1", del["instanceId"])
	require.Equal(t, map[string]any{}, del["changes"])
	require.Equal(t, map[string]any{"id": "p1", "name": "Ada", "bio": nil, "interests": []any{"a", "b"}, "score": float64(7)}, del["old"])
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")

	b.exec(t, `INSERT INTO user_profiles VALUES ('p1', 'Ada', NULL, NULL, 1)`)
	b.exec(t, `TRUNCATE user_profiles`)
	events := b.waitEvents(t, 2)

	require.Equal(t, "data.truncated", events[1]["event"])
	require.Equal(t, "UserProfile", events[1]["model"])
	require.Nil(t, events[1]["instanceId"])
}

func TestColumnsAddedAndDroppedMidStream(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")

	b.exec(t, `INSERT INTO user_profiles VALUES ('p1', 'Ada', NULL, NULL, 1)`)
	b.exec(t, `ALTER TABLE user_profiles ADD COLUMN city text DEFAULT 'Oslo'`)
	b.exec(t, `INSERT INTO user_profiles (id, name, city) VALUES ('p2', 'Bob', 'Rome')`)
	b.exec(t, `ALTER TABLE user_profiles DROP COLUMN bio`)
	b.exec(t, `UPDATE user_profiles SET city = 'Bern' WHERE id = 'p1'`)
	events := b.waitEvents(t, 3)

	require.NotContains(t, events[0]["changes"], "city")
	require.Equal(t, "Rome", events[1]["changes"].(map[string]any)["city"])
	require.Contains(t, events[1]["changes"], "bio")
	require.Equal(t, map[string]any{"city": "Bern"}, events[2]["changes"])
	require.Equal(t, map[string]any{"city": "Oslo"}, events[2]["old"])
}

func TestPartitionedTableUsesParentModel(t *testing.T) {
	t.Parallel()
	b := setup(t, `
		CREATE TABLE measurements (id bigint, day date, value float8, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
		CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');`, "")

	b.exec(t, `INSERT INTO measurements VALUES (1, '2024-05-01', 1.5), (2, '2025-05-01', 2.5)`)
	b.exec(t, `UPDATE measurements SET value = 3 WHERE id = 2`)
	events := b.waitEvents(t, 3)

	for _, e := range events {
		require.Equal(t, "Measurement", e["model"])
		require.Equal(t, "public.measurements", e["table"])
	}
	require.Equal(t, "1,2024-05-01", events[0]["instanceId"])
	require.Equal(t, map[string]any{"value": float64(3)}, events[2]["changes"])
	require.Equal(t, map[string]any{"value": 2.5}, events[2]["old"])
}

func TestTableWithoutPrimaryKey(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE audit_log (at timestamptz, message text)`, "")

	b.exec(t, `INSERT INTO audit_log VALUES ('2024-01-02 03:04:05+00', 'hello')`)
	b.exec(t, `UPDATE audit_log SET message = 'bye'`)
	b.exec(t, `DELETE FROM audit_log`)
	events := b.waitEvents(t, 3)

	for _, e := range events {
		require.Contains(t, e, "instanceId")
		require.Nil(t, e["instanceId"])
	}
	require.Equal(t, map[string]any{"message": "bye"}, events[1]["changes"])
	require.Equal(t, map[string]any{"at": "2024-01-02T03:04:05.000000Z", "message": "bye"}, events[2]["old"])
}

func TestDefaultIdentityReportsWholeRow(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, `
tables:
  - name: user_profiles
    replicaIdentity: default
`)
	big := strings.Repeat("x", 300000)

	b.exec(t, `INSERT INTO user_profiles VALUES ('p1', 'Ada', $1, NULL, 1)`, big)
	b.exec(t, `UPDATE user_profiles SET score = 2 WHERE id = 'p1'`)
	events := b.waitEvents(t, 2)

	update := events[1]
	require.Equal(t, false, update["changesExact"])
	require.Equal(t, map[string]any{"id": "p1", "name": "Ada", "interests": nil, "score": float64(2)}, update["changes"])
	require.Equal(t, []any{"bio"}, update["unavailable"])
	require.NotContains(t, update, "old")
}

func TestSemanticEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, `
		CREATE TABLE users (id bigint PRIMARY KEY, email text, name text);
		CREATE TABLE projects (id bigint PRIMARY KEY, name text, status text);`, `
tables:
  - name: users
    events:
      - {name: user.created, on: insert}
      - {name: user.updated, on: update}
  - name: public.projects
    events:
      - {name: project.status_changed, on: update, columns: [status]}
`)

	b.exec(t, `INSERT INTO users VALUES (1, 'a@example.com', 'Ada')`)
	b.exec(t, `UPDATE users SET name = 'Ada L' WHERE id = 1`)
	b.exec(t, `INSERT INTO projects VALUES (1, 'p', 'draft')`)
	b.exec(t, `UPDATE projects SET name = 'q' WHERE id = 1`)
	b.exec(t, `UPDATE projects SET status = 'active' WHERE id = 1`)
	events := b.waitEvents(t, 7)

	var names []string
	for _, e := range events {
		names = append(names, e["model"].(string)+" "+e["event"].(string))
	}
	require.Equal(t, []string{
		"User data.created", "User user.created",
		"User data.updated", "User user.updated",
		"Project data.created", "Project data.updated",
		"Project data.updated", "Project project.status_changed",
	}, names)
	last := events[len(events)-1]
	require.Equal(t, map[string]any{"status": "active"}, last["changes"])
	require.Equal(t, map[string]any{"status": "draft"}, last["old"])
}

func TestEventIDsSortInCommitOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")

	for i := range 20 {
		b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ($1, 'n')`, string(rune('a'+i)))
	}
	events := b.waitEvents(t, 20)

	for i := 1; i < len(events); i++ {
		prev, cur := events[i-1], events[i]
		require.Less(t, prev["id"].(string), cur["id"].(string))
		prevLSN, err := pglogrepl.ParseLSN(prev["lsn"].(string))
		require.NoError(t, err)
		curLSN, err := pglogrepl.ParseLSN(cur["lsn"].(string))
		require.NoError(t, err)
		require.Less(t, prevLSN, curLSN)
		require.Equal(t, string(rune('a'+i)), cur["instanceId"])
	}
}

func TestUnwatchedWritesAdvanceSlot(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema+`CREATE TABLE other (id int);`, `
tables:
  - name: user_profiles
`)
	ctx := context.Background()
	confirmed := func() pglogrepl.LSN {
		var text string
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, b.cfg.Slot).Scan(&text))
		lsn, err := pglogrepl.ParseLSN(text)
		require.NoError(t, err)
		return lsn
	}
	before := confirmed()

	for i := range 1000 {
		b.exec(t, `INSERT INTO other VALUES ($1)`, i)
	}
	var walNow string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walNow))
	target, err := pglogrepl.ParseLSN(walNow)
	require.NoError(t, err)

	waitFor(t, 30*time.Second, "confirmed_flush_lsn to pass the unwatched writes", func() bool { return confirmed() >= target })
	require.Greater(t, confirmed(), before)
}

func TestTableCreatedLaterGetsFullIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t, "", "")

	b.exec(t, `CREATE TABLE late_comers (id int PRIMARY KEY, a text, b text)`)
	b.exec(t, `INSERT INTO late_comers VALUES (1, 'x', 'y')`)
	b.waitEvents(t, 1)
	waitFor(t, 10*time.Second, "replica identity full", func() bool {
		var identity string
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT relreplident::text FROM pg_class WHERE oid = 'late_comers'::regclass`).Scan(&identity))
		return identity == "f"
	})
	b.exec(t, `UPDATE late_comers SET b = 'z'`)
	events := b.waitEvents(t, 2)

	require.Equal(t, "LateComer", events[1]["model"])
	require.Equal(t, map[string]any{"b": "z"}, events[1]["changes"])
	require.Equal(t, map[string]any{"b": "y"}, events[1]["old"])
}
