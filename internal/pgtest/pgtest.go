// Package pgtest gives each test its own database on a PostgreSQL server with
// wal_level=logical: a throwaway cluster started once per test binary, or the
// server that CIVICBASE_TEST_DATABASE_URL names.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/civicbase/civicbase/internal/pgcluster"
)

// EnvURL names an existing server to use instead of a throwaway cluster. Its
// user must be allowed to create databases and replication slots.
const EnvURL = "CIVICBASE_TEST_DATABASE_URL"

var (
	startOnce  sync.Once
	cluster    *pgcluster.Cluster
	serverURL  string
	startErr   error
	dbCounter  atomic.Int64
	unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)
)

// Main runs the tests and then removes the throwaway cluster, if one was
// started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// Every goroutine a test starts must have stopped by now. Idle
		// keep-alive connections of HTTP clients are not owned by a test.
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: goroutines leaked:", err)
			code = 1
		}
	}
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := cluster.Remove(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
		cancel()
	}
	os.Exit(code)
}

// Cluster returns the throwaway cluster, starting it on first use. It skips
// the test when CIVICBASE_TEST_DATABASE_URL is set, because tests that stop
// and start the server need a cluster of their own.
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	if os.Getenv(EnvURL) != "" {
		t.Skipf("%s is set; this test restarts the server and needs the throwaway cluster", EnvURL)
	}
	ensureServer(t)
	return cluster
}

// OwnCluster starts a throwaway cluster for this test alone, for tests that
// stop the server or change its settings, and removes it when the test
// ends. Like Cluster, it skips the test when CIVICBASE_TEST_DATABASE_URL is
// set.
func OwnCluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	if os.Getenv(EnvURL) != "" {
		t.Skipf("%s is set; this test needs a throwaway cluster of its own", EnvURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatalf("starting a throwaway postgres for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() { _ = c.Remove(context.Background()) })
	return c
}

// ServerURL returns a URL of the maintenance database on the test server.
func ServerURL(t testing.TB) string {
	t.Helper()
	ensureServer(t)
	return serverURL
}

func ensureServer(t testing.TB) {
	t.Helper()
	startOnce.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			serverURL = u
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, startErr = pgcluster.Start(ctx, pgcluster.Options{})
		if startErr == nil {
			serverURL = cluster.URL("postgres")
		}
	})
	if startErr != nil {
		t.Fatalf("starting throwaway postgres: %v", startErr)
	}
}

// NewDB creates an empty database for this test and drops it, with any
// replication slots on it, when the test ends. It returns its URL.
func NewDB(t testing.TB) string {
	t.Helper()
	ensureServer(t)
	name := fmt.Sprintf("t%d_%s", dbCounter.Add(1), unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_"))
	if len(name) > 60 {
		name = name[:60]
	}
	exec(t, serverURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() { dropDB(t, name) })
	return withDatabase(t, serverURL, name)
}

func dropDB(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Logf("pgtest: connecting to drop %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	// A slot keeps its database alive, so drop the slots first; an active
	// slot's walsender is ended by the FORCE below, then retried.
	for range 50 {
		_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
		if err == nil {
			_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		}
		if err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		}
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("pgtest: dropping database %s: %v", name, err)
}

func exec(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v", redact(dsn), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

func withDatabase(t testing.TB, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("pgtest: %s must be a postgres:// URL", EnvURL)
	}
	u.Path = "/" + db
	return u.String()
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
