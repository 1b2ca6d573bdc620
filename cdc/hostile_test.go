package cdc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

// requireStringifyStable checks each payload against Node.js:
// JSON.stringify(JSON.parse(p)) must return p byte for byte.
func requireStringifyStable(t *testing.T, payloads []string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	dir := t.TempDir()
	input := filepath.Join(dir, "payloads.json")
	// Each payload is wrapped in a JSON string, so Node reads the exact bytes.
	wrapped, err := json.Marshal(payloads)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(input, wrapped, 0o644))
	script := `const ps = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));
ps.forEach((p, i) => { const s = JSON.stringify(JSON.parse(p)); if (s !== p) console.log(i + "\n" + p.slice(0, 400) + "\n" + s.slice(0, 400)); });`
	out, err := exec.Command(node, "-e", script, input).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Empty(t, string(out), "payloads differ from JSON.stringify")
}

func TestIntegerLikeColumnNames(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE odd ("10" int PRIMARY KEY, "2" text, "a" int, "4294967295" int, "4294967294" int, "01" int, "-1" int, "b""q" text, "line`+"\u2028"+`sep" int)`, "")

	b.exec(t, `INSERT INTO odd VALUES (1, 'two', 3, 4, 5, 6, 7, 'q', 8)`)
	b.exec(t, `UPDATE odd SET "2" = 'deux', "4294967295" = 40, "01" = 60`)
	events := b.rawEvents(t, 2)

	requireStringifyStable(t, events)
}

func TestHostileJSONValues(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE docs (id int PRIMARY KEY, j json, jb jsonb, t text)`, "")

	cases := []struct{ j, t string }{
		{`{"a":1,"a":2}`, "dup keys"},
		{`{"__proto__":{"x":1},"constructor":2}`, "proto"},
		{`"\u0000 nul \ud800 lone \u2028"`, "escapes"},
		{`[1.0000000000000001, 1e-400, -0, 0.1, 1E2, 123456789012345678901234567890]`, "numbers"},
		{`{"10":1,"2":2,"1.5":3,"-1":4,"01":5,"":6}`, "index keys"},
	}
	for i, c := range cases {
		b.exec(t, `INSERT INTO docs VALUES ($1, $2::json, NULL, $3)`, i, c.j, c.t)
	}
	b.exec(t, `INSERT INTO docs VALUES (100, NULL, $1::jsonb, E'quote " nl \n emoji 😀 ls \u2028 ps \u2029 <>&')`,
		`{"big": "`+strings.Repeat("y", 2_000_000)+`", "n": 12345678901234567890}`)
	b.exec(t, `INSERT INTO docs VALUES (101, NULL, NULL, 'last')`)
	events := b.rawEvents(t, len(cases)+2)

	require.Len(t, events, len(cases)+2)
	requireStringifyStable(t, events)
}

// A json value nested deeper than the canonical writer's limit must not stop
// capture. Postgres and JSON.parse both accept it, and every later change of
// every table waits behind it.
func TestDeepJSONDoesNotWedgeStream(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE docs (id int PRIMARY KEY, j json)`, "")

	b.exec(t, `INSERT INTO docs VALUES (1, $1::json)`, strings.Repeat(`[`, 1500)+strings.Repeat(`]`, 1500))
	b.exec(t, `INSERT INTO docs VALUES (2, '{}')`)
	events := b.rawEvents(t, 2)

	require.Len(t, events, 2)
	requireStringifyStable(t, events)
}

func TestArrayWithLowerBound(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE arr (id int PRIMARY KEY, a int[], n text[])`, "")

	b.exec(t, `INSERT INTO arr VALUES (1, '[0:2]={1,2,3}', '{NULL,NULL}')`)
	b.exec(t, `INSERT INTO arr VALUES (2, '{1}', '{}')`)
	events := b.waitEvents(t, 2)

	require.Len(t, events, 2)
	require.Equal(t, []any{float64(1), float64(2), float64(3)}, events[0]["changes"].(map[string]any)["a"])
	require.Equal(t, []any{nil, nil}, events[0]["changes"].(map[string]any)["n"])
}

func TestDomainOverArray(t *testing.T) {
	t.Parallel()
	b := setup(t, `
		CREATE DOMAIN int_list AS int[] CHECK (cardinality(VALUE) < 10);
		CREATE DOMAIN tag AS text;
		CREATE TABLE tagged (id int PRIMARY KEY, nums int_list, tags tag[])`, "")

	b.exec(t, `INSERT INTO tagged VALUES (1, '{1,NULL,3}', '{a,"b,c"}')`)
	events := b.waitEvents(t, 1)

	changes := events[0]["changes"].(map[string]any)
	require.Equal(t, []any{float64(1), nil, float64(3)}, changes["nums"])
	require.Equal(t, []any{"a", "b,c"}, changes["tags"])
}

func TestCompositeKeyWithCommas(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE pairs (a text, b text, PRIMARY KEY (a, b))`, "")

	b.exec(t, `INSERT INTO pairs VALUES ('x,y', 'z'), ('x', 'y,z'), ('x\', ',z')`)
	events := b.waitEvents(t, 3)

	ids := map[string]bool{}
	for _, e := range events {
		ids[e["instanceId"].(string)] = true
	}
	require.Len(t, ids, 3, "composite instanceIds collide: %v", ids)
	require.Equal(t, `x\,y,z`, events[0]["instanceId"])
}

func TestTruncateSeveralTables(t *testing.T) {
	t.Parallel()
	b := setup(t, `
		CREATE TABLE parents (id int PRIMARY KEY);
		CREATE TABLE children (id int PRIMARY KEY, parent_id int REFERENCES parents);
		CREATE TABLE loners (id int)`, "")

	b.exec(t, `INSERT INTO parents VALUES (1); INSERT INTO children VALUES (1, 1); INSERT INTO loners VALUES (1)`)
	b.exec(t, `TRUNCATE parents, loners CASCADE`)
	events := b.waitEvents(t, 6)

	var truncated []string
	for _, e := range events[3:] {
		require.Equal(t, "data.truncated", e["event"])
		truncated = append(truncated, e["table"].(string))
	}
	require.ElementsMatch(t, []string{"public.parents", "public.children", "public.loners"}, truncated)
}

func TestMixedTransactionOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)`, "")

	b.exec(t, `BEGIN; INSERT INTO a VALUES (1); INSERT INTO b VALUES (1); UPDATE a SET id = 2; DELETE FROM b; COMMIT`)
	events := b.waitEvents(t, 4)

	var got []string
	for _, e := range events {
		got = append(got, e["table"].(string)+" "+e["event"].(string))
	}
	require.Equal(t, []string{"public.a data.created", "public.b data.created", "public.a data.updated", "public.b data.deleted"}, got)
	require.Equal(t, events[0]["lsn"], events[3]["lsn"])
}

func TestVeryManyColumns(t *testing.T) {
	t.Parallel()
	cols := make([]string, 0, 1500)
	for i := range 1500 {
		cols = append(cols, fmt.Sprintf(`"%d" int DEFAULT %d`, i, i))
	}
	b := setup(t, `CREATE TABLE wide (id int PRIMARY KEY, `+strings.Join(cols, ", ")+`)`, "")

	b.exec(t, `INSERT INTO wide (id) VALUES (1)`)
	b.exec(t, `UPDATE wide SET "1499" = -1, "7" = -7`)
	events := b.rawEvents(t, 2)

	requireStringifyStable(t, events)
	require.Contains(t, events[1], `"changes":{"7":-7,"1499":-1},"old":{"7":7,"1499":1499}`)
}

func TestToastUnchangedUnderDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE blobs (id int PRIMARY KEY, body text, n int)`, `
tables:
  - name: blobs
    replicaIdentity: default
`)
	big := strings.Repeat("0123456789abcdef", 65536) // 1 MiB

	b.exec(t, `INSERT INTO blobs VALUES (1, $1, 1)`, big)
	b.exec(t, `UPDATE blobs SET n = 2`)
	b.exec(t, `DELETE FROM blobs`)
	events := b.waitEvents(t, 3)

	update := events[1]
	require.NotContains(t, update["changes"], "body")
	require.Equal(t, []any{"body"}, update["unavailable"])
	require.Equal(t, map[string]any{"id": float64(1)}, events[2]["old"])
}

func TestAlterColumnTypeMidStream(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE m (id int PRIMARY KEY, v int)`, "")

	b.exec(t, `INSERT INTO m VALUES (1, 5)`)
	b.exec(t, `ALTER TABLE m ALTER COLUMN v TYPE numeric USING v::numeric`)
	b.exec(t, `UPDATE m SET v = 5.5`)
	b.exec(t, `ALTER TABLE m ALTER COLUMN v TYPE text`)
	b.exec(t, `UPDATE m SET v = 'x'`)
	events := b.waitEvents(t, 3)

	require.Equal(t, map[string]any{"v": "5.5"}, events[1]["changes"])
	require.Equal(t, map[string]any{"v": "x"}, events[2]["changes"])
}

func TestPartitionMoveIsDeleteAndCreate(t *testing.T) {
	t.Parallel()
	b := setup(t, `
		CREATE TABLE readings (id int, day date, v int, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
		CREATE TABLE readings_a PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE readings_b PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');`, "")

	b.exec(t, `INSERT INTO readings VALUES (1, '2024-06-01', 1)`)
	b.exec(t, `UPDATE readings SET day = '2025-06-01'`)
	events := b.waitEvents(t, 3)

	// Postgres logs a row that moves to another partition as a delete and
	// an insert, as the README documents.
	require.Equal(t, "data.deleted", events[1]["event"])
	require.Equal(t, "1,2024-06-01", events[1]["instanceId"])
	require.Equal(t, "data.created", events[2]["event"])
	require.Equal(t, "1,2025-06-01", events[2]["instanceId"])
}

func TestRenameWatchedTable(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE widgets (id int PRIMARY KEY, name text)`, `
tables:
  - name: widgets
    model: Widget
    events:
      - {name: widget.created, on: insert}
`)

	b.exec(t, `INSERT INTO widgets VALUES (1, 'a')`)
	b.exec(t, `ALTER TABLE widgets RENAME TO gadgets`)
	b.exec(t, `INSERT INTO gadgets VALUES (2, 'b')`)
	events := b.waitEvents(t, 3)

	var got []string
	for _, e := range events {
		got = append(got, e["model"].(string)+" "+e["event"].(string)+" "+e["table"].(string))
	}
	t.Logf("events: %q", got)
	require.Len(t, events, 4, "the insert after the rename should still fire widget.created")
	require.Equal(t, "Widget", events[2]["model"])
}

func TestSemanticEventUnknownColumn(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte(`
tables:
  - name: projects
    events:
      - {name: project.status_changed, on: update, columns: [stauts]}
`))
	require.NoError(t, err)
	b := setup(t, `CREATE TABLE projects (id int PRIMARY KEY, status text)`, "")
	cfg.DatabaseURL = config.Secret(b.url)

	err = cdc.Preflight(context.Background(), b.pool, cfg)
	require.Error(t, err, "a semantic event on a column the table does not have can never fire")
}

func TestIdentityIndexGivesInstanceID(t *testing.T) {
	t.Parallel()
	b := setup(t, `
		CREATE TABLE tokens (token text NOT NULL, owner text);
		CREATE UNIQUE INDEX tokens_token ON tokens (token);
		ALTER TABLE tokens REPLICA IDENTITY USING INDEX tokens_token;`, "")

	b.exec(t, `INSERT INTO tokens VALUES ('abc', 'ada')`)
	b.exec(t, `DELETE FROM tokens`)
	events := b.waitEvents(t, 2)

	require.Equal(t, "abc", events[0]["instanceId"], "README: tables without a primary key use their replica identity index")
	require.Equal(t, "abc", events[1]["instanceId"])
}

func TestSlotNameTakenByOtherDatabase(t *testing.T) {
	t.Parallel()
	first := setup(t, `CREATE TABLE a (id int PRIMARY KEY)`, "slot: shared_slot")
	ctx := context.Background()
	var firstDB string
	require.NoError(t, first.pool.QueryRow(ctx, `SELECT current_database()`).Scan(&firstDB))

	url := pgtest.NewDB(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE b (id int PRIMARY KEY)`)
	require.NoError(t, err)
	cfg, err := config.Parse([]byte("slot: shared_slot"))
	require.NoError(t, err)
	cfg.DatabaseURL = config.Secret(url)
	log := testLogger()
	require.NoError(t, cdc.Preflight(ctx, pool, cfg))
	require.NoError(t, sql.Migrate(ctx, pool, log))
	require.NoError(t, cdc.EnsurePublication(ctx, pool, cfg, log))

	runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = cdc.NewReader(cfg, pool, store.New(pool), log).Run(runCtx)

	require.ErrorIs(t, err, cdc.ErrSlotConflict, "the slot belongs to database %s, so the reader must stop with a message instead of retrying", firstDB)
	require.Contains(t, err.Error(), firstDB)
}
