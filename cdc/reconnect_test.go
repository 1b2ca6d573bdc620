package cdc_test

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
