package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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

func TestStatusWithoutDatabaseURL(t *testing.T) {
	t.Parallel()
	err := statusCommand(context.Background(), &bytes.Buffer{}, func(string) string { return "" })

	require.ErrorContains(t, err, "DATABASE_URL is not set")
}
