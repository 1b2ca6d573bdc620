package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

func TestStatusShowsSlotEventsAndQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	svc := startReady(t, url, "CIVICBASE_DEV=true")
	registerWebhook(t, svc.addr, failing.URL+"/hook?token=secret-in-query")
	_, err := pool.Exec(ctx, `INSERT INTO items VALUES (1), (2)`)
	require.NoError(t, err)
	waitUntil(t, 20*time.Second, "a failed attempt", func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM civicbase.delivery_attempts`).Scan(&n))
		return n > 0
	})
	slot := "slot_" + strings.NewReplacer("/", "", "?sslmode=disable", "").Replace(url[strings.LastIndex(url, "/"):])
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("slot: "+slot+"\n"), 0o600))

	var out bytes.Buffer
	err = statusCommand(ctx, &out, func(k string) string {
		return map[string]string{"DATABASE_URL": url, "CIVICBASE_CONFIG": cfgPath}[k]
	})
	require.NoError(t, err)

	text := out.String()
	require.Contains(t, text, "Replication slot "+slot)
	require.Regexp(t, regexp.MustCompile(`active\s+yes`), text)
	require.Regexp(t, regexp.MustCompile(`wal_status\s+reserved`), text)
	require.Regexp(t, regexp.MustCompile(`leader\s+server process \d+`), text)
	require.Regexp(t, regexp.MustCompile(`standbys\s+0 waiting`), text)
	require.Regexp(t, regexp.MustCompile(`stored\s+2,`), text)
	require.Regexp(t, regexp.MustCompile(`wh_\S+\s+`+regexp.QuoteMeta(strings.TrimPrefix(failing.URL, "http://"))+`\s+yes\s+2\s`), text)
	require.NotContains(t, text, "secret-in-query", "only the host of an endpoint is shown")
}

func TestStatusShowsGaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, ``)
	require.NoError(t, sql.Migrate(ctx, pool, slog.New(slog.DiscardHandler)))
	st := store.New(pool)
	old := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	id := func(n int) string { return fmt.Sprintf("evt_%026x", n) }
	var events []store.Event
	for n := 1; n <= 2; n++ {
		events = append(events, store.Event{ID: id(n), Event: "data.created", Model: "Item", Table: "public.items",
			CommitTime: old, Payload: []byte(`{}`)})
	}
	require.NoError(t, st.Write(ctx, events, nil))
	_, err := st.Prune(ctx, old.Add(time.Second), 100)
	require.NoError(t, err)
	resolved, err := st.AcceptSlotLoss(ctx, "civicbase_slot", "dropped", 0x100)
	require.NoError(t, err)
	require.NoError(t, st.ResolveGap(ctx, resolved.ID, "civicbase_slot", 0x200, id(3)))
	pending, err := st.AcceptSlotLoss(ctx, "civicbase_slot", "invalidated (wal_status lost)", 0x300)
	require.NoError(t, err)

	var out bytes.Buffer
	err = statusCommand(ctx, &out, func(k string) string { return map[string]string{"DATABASE_URL": url}[k] })
	require.NoError(t, err)

	text := out.String()
	require.Regexp(t, `events pruned\s+up to `+id(2)+`, committed up to 2024-05-01T12:00:00Z`, text)
	require.Regexp(t, fmt.Sprintf(`slot lost\s+gap %d, dropped: LSN 0/100 to 0/200 not captured; complete after %s since `, resolved.ID, id(3)), text)
	require.Regexp(t, fmt.Sprintf(`slot lost\s+gap %d, invalidated \(wal_status lost\), after LSN 0/300: accepted, waiting`, pending.ID), text)
}

func TestStatusWithoutDatabaseURL(t *testing.T) {
	t.Parallel()
	err := statusCommand(context.Background(), &bytes.Buffer{}, func(string) string { return "" })

	require.ErrorContains(t, err, "DATABASE_URL is not set")
}
