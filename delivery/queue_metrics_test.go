package delivery_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
)

// seedBacklog stores, one statement after another, 150,000 events committed
// from $1 on, one per millisecond, and 300,001 pending deliveries:
//   - wh_capped: every event pending, more than PendingCountLimit.
//   - wh_at_limit: the first 50,000 delivered, the next 100,000 pending.
//   - wh_under: the last 50,000 pending; the endpoint is disabled.
//   - wh_test_only: one webhook.test delivery queued at $1 plus 50 minutes.
//   - wh_idle: disabled, with no delivery.
//
// Event ids have the service's form: evt_, 16 hex digits, 10 more digits.
var seedBacklog = []string{
	`INSERT INTO civicbase.webhooks (id, url, events, secret, active)
SELECT id, 'https://receiver.invalid/' || id, '{*}', 'plain:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', active
FROM (VALUES ('wh_capped', true), ('wh_at_limit', true), ('wh_under', false),
	('wh_test_only', true), ('wh_idle', false)) w(id, active)`,
	`INSERT INTO civicbase.events (id, event, model, table_name, instance_id, commit_lsn, commit_time, txid, payload)
SELECT 'evt_' || lpad(to_hex(i), 16, '0') || '0000000000', 'data.created', 'User', 'public.users', i::text, i,
	$1::timestamptz + i * interval '1 ms', i, '{}'
FROM generate_series(1, 150000) i`,
	`INSERT INTO civicbase.deliveries (webhook_id, event_id, row_key, status)
SELECT w.id, 'evt_' || lpad(to_hex(i), 16, '0') || '0000000000', 'public.users:' || i,
	CASE WHEN i < w.first_pending THEN 'delivered' ELSE 'pending' END
FROM (VALUES ('wh_capped', 1, 1), ('wh_at_limit', 1, 50001), ('wh_under', 100001, 100001)) w(id, first, first_pending),
	generate_series(1, 150000) i
WHERE i >= w.first`,
	`INSERT INTO civicbase.deliveries (webhook_id, event_id, row_key, payload, created_at)
VALUES ('wh_test_only', 'evt_test_seed', 'evt_test_seed', '{}', $1::timestamptz + interval '50 minutes')`,
	`ANALYZE civicbase.deliveries`,
}

func TestMetricsQueueLargeBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	seedStart := time.Now()
	for _, statement := range seedBacklog {
		var args []any
		if strings.Contains(statement, "$1") {
			args = append(args, base)
		}
		_, err := b.pool.Exec(ctx, statement, args...)
		require.NoError(t, err)
	}
	var pending int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM civicbase.deliveries WHERE status = 'pending'`).Scan(&pending))
	require.Equal(t, 300_001, pending)
	t.Logf("seeded %d pending deliveries in %s", pending, time.Since(seedStart).Round(time.Millisecond))

	reg := prometheus.NewRegistry()
	queue := delivery.NewQueueCollector(b.pool, delivery.QueueConfig{}, logger())
	reg.MustRegister(queue)
	readStart := time.Now()
	require.NoError(t, queue.Refresh(ctx))
	readTook := time.Since(readStart)
	scrapeStart := time.Now()
	got := gather(t, reg)
	scrapeTook := time.Since(scrapeStart)
	readEnd := time.Now()
	// Timings are logged, not asserted: they depend on the machine.
	t.Logf("reading the queue took %s; a scrape took %s", readTook.Round(time.Microsecond), scrapeTook.Round(time.Microsecond))

	require.Equal(t, float64(delivery.PendingCountLimit), got["civicbase_delivery_pending,wh_capped"])
	require.Equal(t, 100_000.0, got["civicbase_delivery_pending,wh_at_limit"])
	require.Equal(t, 50_000.0, got["civicbase_delivery_pending,wh_under"])
	require.Equal(t, 1.0, got["civicbase_delivery_pending,wh_test_only"])
	require.Equal(t, 0.0, got["civicbase_delivery_pending,wh_idle"])
	require.Equal(t, 2.0, got["civicbase_webhooks_disabled"])

	// The age is that of the oldest pending event's commit, read between
	// readStart and readEnd.
	requireAge := func(hook string, since time.Time) {
		t.Helper()
		age := got["civicbase_delivery_oldest_pending_seconds,"+hook]
		require.GreaterOrEqual(t, age, readStart.Sub(since).Seconds()-0.01, hook)
		require.LessOrEqual(t, age, readEnd.Sub(since).Seconds()+0.01, hook)
	}
	requireAge("wh_capped", base.Add(time.Millisecond))
	requireAge("wh_at_limit", base.Add(50_001*time.Millisecond))
	requireAge("wh_under", base.Add(100_001*time.Millisecond))
	requireAge("wh_test_only", base.Add(50*time.Minute))
	require.Equal(t, 0.0, got["civicbase_delivery_oldest_pending_seconds,wh_idle"])
	require.Less(t, got["civicbase_delivery_queue_snapshot_age_seconds"], readEnd.Sub(readStart).Seconds()+0.01)
}

func TestMetricsQueueServedFromSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// The collector gets a pool of its own, closed below to show that a
	// scrape needs no connection and that a failed read keeps the values.
	own, err := pgxpool.New(ctx, b.pool.Config().ConnString())
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	queue := delivery.NewQueueCollector(own, delivery.QueueConfig{}, logger())
	reg.MustRegister(queue)
	hook := b.register(t, "https://receiver.invalid/", "*")
	b.write(t, "u1")

	count, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Equal(t, 0, count, "series before the first read")

	require.NoError(t, queue.Refresh(ctx))
	first := gather(t, reg)
	require.Equal(t, 1.0, first["civicbase_delivery_pending,"+hook])

	b.write(t, "u2")
	time.Sleep(10 * time.Millisecond)
	second := gather(t, reg)
	require.Equal(t, 1.0, second["civicbase_delivery_pending,"+hook], "a scrape read the database")
	require.Greater(t, second["civicbase_delivery_oldest_pending_seconds,"+hook], first["civicbase_delivery_oldest_pending_seconds,"+hook])
	require.Greater(t, second["civicbase_delivery_queue_snapshot_age_seconds"], first["civicbase_delivery_queue_snapshot_age_seconds"])

	own.Close()
	require.Equal(t, second["civicbase_delivery_pending,"+hook], gather(t, reg)["civicbase_delivery_pending,"+hook])
	require.Error(t, queue.Refresh(ctx))
	third := gather(t, reg)
	require.Equal(t, 1.0, third["civicbase_delivery_pending,"+hook], "a failed read replaced the values")
	require.GreaterOrEqual(t, third["civicbase_delivery_queue_snapshot_age_seconds"], second["civicbase_delivery_queue_snapshot_age_seconds"])
}

func TestMetricsQueueStatementTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	queue := delivery.NewQueueCollector(b.pool, delivery.QueueConfig{Timeout: 100 * time.Millisecond}, logger())
	// A lock held elsewhere keeps the read waiting until its statement
	// timeout ends it.
	lock, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = lock.Exec(ctx, `LOCK TABLE civicbase.webhooks IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	err = queue.Refresh(ctx)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "57014", pgErr.Code)
	require.Contains(t, pgErr.Message, "statement timeout")

	require.NoError(t, lock.Rollback(ctx))
	require.NoError(t, queue.Refresh(ctx))
}

func TestMetricsQueueRunRefreshesUntilCanceled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	queue := delivery.NewQueueCollector(b.pool, delivery.QueueConfig{Interval: 20 * time.Millisecond}, logger())
	reg.MustRegister(queue)
	hook := b.register(t, "https://receiver.invalid/", "*")
	b.write(t, "u1")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- queue.Run(ctx) }()
	waitFor(t, 10*time.Second, "first read", func() bool {
		return gather(t, reg)["civicbase_delivery_pending,"+hook] == 1
	})
	b.write(t, "u2")
	waitFor(t, 10*time.Second, "second read", func() bool {
		return gather(t, reg)["civicbase_delivery_pending,"+hook] == 2
	})

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was canceled")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestMetricsQueueRunWarnsOncePerMinute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	own, err := pgxpool.New(context.Background(), b.pool.Config().ConnString())
	require.NoError(t, err)
	own.Close()
	var logs syncBuffer
	queue := delivery.NewQueueCollector(own, delivery.QueueConfig{Interval: 5 * time.Millisecond},
		slog.New(slog.NewTextHandler(&logs, nil)))

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.NoError(t, queue.Run(ctx))
	require.True(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
	require.Equal(t, 1, strings.Count(logs.String(), "reading delivery queue metrics failed"), logs.String())
}
