package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
)

func TestReaderReconnectsAfterPostgresRestart(t *testing.T) {
	t.Parallel()
	c := pgtest.OwnCluster(t)
	ctx := context.Background()
	b := setupOn(t, c.URL("postgres"), profilesSchema, "")

	b.exec(t, `INSERT INTO user_profiles (id, name) SELECT 'a' || g, 'n' FROM generate_series(1, 100) g`)
	b.waitEvents(t, 100)
	require.NoError(t, c.StopServer(ctx, "fast"))
	require.NoError(t, c.StartServer(ctx))
	b.pool.Reset() // its connections died with the server
	b.exec(t, `INSERT INTO user_profiles (id, name) SELECT 'b' || g, 'n' FROM generate_series(1, 100) g`)
	events := b.waitEvents(t, 200)

	require.Len(t, events, 200)
	for i, e := range events[100:] {
		require.True(t, strings.HasPrefix(e["instanceId"].(string), "b"), "event %d: %v", i+100, e)
	}
}

// Rows written one per transaction while PostgreSQL stops with "fast" and
// later crashes with "immediate": every row whose transaction committed
// becomes an event, and none is lost across the reconnects.
func TestPostgresRestartsDuringWritesLoseNothing(t *testing.T) {
	t.Parallel()
	c := pgtest.OwnCluster(t)
	ctx := context.Background()
	b := setupOn(t, c.URL("postgres"), profilesSchema, "")

	const rows = 600
	var committed atomic.Int64
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; i < rows; {
			_, err := b.pool.Exec(ctx, `INSERT INTO user_profiles (id, name) VALUES ($1, 'n')`, fmt.Sprintf("w%04d", i))
			if pgErr, ok := errors.AsType[*pgconn.PgError](err); err == nil || (ok && pgErr.Code == "23505") {
				// A duplicate key means an earlier try committed although
				// the server went away before its reply arrived.
				i++
				committed.Store(int64(i))
				continue
			}
			time.Sleep(50 * time.Millisecond) // the server is down; try the same row again
		}
	}()

	for _, stop := range []struct {
		mode  string
		after int64
	}{{"fast", 150}, {"immediate", 350}} {
		waitFor(t, 60*time.Second, fmt.Sprintf("%d rows committed", stop.after), func() bool { return committed.Load() >= stop.after })
		require.NoError(t, c.StopServer(ctx, stop.mode))
		require.NoError(t, c.StartServer(ctx))
		b.pool.Reset() // its connections died with the server
	}
	select {
	case <-writerDone:
	case <-time.After(60 * time.Second):
		t.Fatalf("the writer committed only %d of %d rows in 60 s", committed.Load(), rows)
	}

	events := b.waitEvents(t, rows)
	seen := map[string]int{}
	for _, e := range events {
		seen[e["instanceId"].(string)]++
	}
	for i := range rows {
		id := fmt.Sprintf("w%04d", i)
		require.Equal(t, 1, seen[id], "events of row %s", id)
	}
	require.Len(t, seen, rows)
}

func TestLargeTransactionHeapStaysBounded(t *testing.T) {
	// Not parallel: it measures this process's heap.
	b := setup(t, `CREATE TABLE wide (id int PRIMARY KEY, body text)`, "")
	const rows = 100_000
	var maxHeap atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			maxHeap.Store(max(maxHeap.Load(), ms.HeapAlloc))
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	// 100,000 rows of 1 KB: held whole, the events alone would take well
	// over 100 MB.
	b.exec(t, `INSERT INTO wide SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, $1) g`, rows)
	waitFor(t, 120*time.Second, "all rows stored", func() bool {
		var n int
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM civicbase.events`).Scan(&n))
		return n == rows
	})
	close(stop)
	<-sampled

	t.Logf("max heap during a %d-row transaction: %.1f MB", rows, float64(maxHeap.Load())/(1<<20))
	require.Less(t, maxHeap.Load(), uint64(60<<20))
}
