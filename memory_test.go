package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/config"
)

// memoryRowsEnv sets the row count of TestHeapBoundedWithStalledClient. The
// default keeps the test short enough for CI under -race; the README's
// memory bounds were measured with 1000000.
const memoryRowsEnv = "CIVICBASE_MEMORY_TEST_ROWS"

// maxServiceHeap is the bound on HeapInuse that the test enforces, for the
// service and the test's own client together.
const maxServiceHeap = 64 << 20

func TestHeapBoundedWithStalledClient(t *testing.T) {
	// Not parallel: it measures this process's heap, and Go runs no
	// parallel test of the package meanwhile.
	rows := 50_000
	if v := os.Getenv(memoryRowsEnv); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "%s=%q is not an integer", memoryRowsEnv, v)
		rows = n
	}
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE wide (id int PRIMARY KEY, body text)`)
	addr := serveInProcess(t, url)

	stalled := dialRealtime(t, addr, "Wide", "")
	var subscribed map[string]any
	require.NoError(t, stalled.conn.ReadJSON(&subscribed))
	require.Equal(t, "subscribed", subscribed["type"], subscribed)
	heap := newHeapSampler()
	start := time.Now()
	defer func() {
		t.Logf("max HeapInuse while %d rows were stored and read: %s MB, after %s; peak RSS of the test process: %s",
			rows, mb(heap.stopInuse()), time.Since(start).Round(time.Second), peakRSS())
	}()

	// Rows of about 1 KB: held whole, the events' payloads alone would take
	// over 100 MB per 100,000 rows.
	inserted := make(chan error, 1)
	go func() {
		_, err := pool.Exec(ctx, `INSERT INTO wide SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, $1) g`, rows)
		inserted <- err
	}()

	// The hub closes the session once its connection has taken nothing for
	// the stall timeout. The client then reads what the kernel's socket
	// buffers took before the close frame, and the reason names the last of
	// them.
	waitUntil(t, 10*time.Minute, "the stalled session closed", func() bool {
		return metricAt(t, addr, "civicbase_realtime_slow_closes_total") >= 1 ||
			metricAt(t, addr, "civicbase_realtime_connections") == 0
	})
	require.Equal(t, 1.0, metricAt(t, addr, "civicbase_realtime_slow_closes_total"),
		"the hub dropped the stalled session without closing it with 4008")
	closedAfter := time.Since(start)
	seq := &sequence{t: t}
	closeErr := seq.drain(stalled.conn)
	require.Equal(t, 4008, closeErr.Code, "close reason %q", closeErr.Text)
	var reason struct{ LastID string }
	require.NoError(t, json.Unmarshal([]byte(closeErr.Text), &reason), "close reason %q", closeErr.Text)
	require.Equal(t, seq.lastID, reason.LastID)
	beforeClose := seq.n

	// Resuming from that id delivers each remaining row once, in order.
	resumed := dialRealtime(t, addr, "Wide", reason.LastID)
	seq.readUntil(resumed.conn, rows)
	require.NoError(t, <-inserted)
	peak := heap.stopInuse()

	require.Equal(t, rows, seq.n)
	t.Logf("4008 after %s with %d of %d rows read", closedAfter.Round(time.Second), beforeClose, rows)
	require.Less(t, peak, uint64(maxServiceHeap))
}

// serveInProcess runs the service in this process on url until the test
// ends, and returns its address once /readyz passes.
func serveInProcess(t *testing.T, url string) string {
	t.Helper()
	addr := freeAddr(t)
	slot := "slot_" + strings.NewReplacer("/", "", "?sslmode=disable", "").Replace(url[strings.LastIndex(url, "/"):])
	env := map[string]string{"DATABASE_URL": url, "CIVICBASE_ADMIN_TOKEN": "test-token-0123456789", "CIVICBASE_ADDR": addr}
	cfg, err := config.Load(func(k string) string { return env[k] })
	require.NoError(t, err)
	cfg.Slot = slot

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logOut io.Writer = io.Discard
	if os.Getenv("CIVICBASE_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { done <- serve(ctx, cfg, log, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("service did not stop within 30s")
		}
	})
	waitUntil(t, 30*time.Second, "service ready", func() bool { return httpOK(addr + "/readyz") })
	return addr
}

// metricAt returns the value of an unlabelled metric on addr's /metrics.
func metricAt(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(body), "\n") {
		if value, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err)
			return v
		}
	}
	t.Fatalf("metric %s not found on /metrics", name)
	return 0
}

// sequence checks that realtime messages arrive once each and in order:
// the n-th message is row n of the table, whose key is n.
type sequence struct {
	t      *testing.T
	n      int
	lastID string
}

// next checks one message and reports whether it was an event. It reads
// the fields it needs without decoding the whole message, because decoding
// a million messages under the race detector takes minutes.
func (s *sequence) next(data []byte) bool {
	s.t.Helper()
	switch stringField(data, "type") {
	case "subscribed":
		return false
	case "create":
	default:
		s.t.Fatalf("unexpected message after %d events: %s", s.n, data)
	}
	if got := stringField(data, "instanceId"); got != strconv.Itoa(s.n+1) {
		s.t.Fatalf("event %d: got instanceId %q; every event must arrive once and in order: %s", s.n+1, got, data)
	}
	s.n++
	s.lastID = stringField(data, "id")
	return true
}

// stringField returns the value of the first member key whose value is a
// string without escapes, or "" when there is none. The members that the
// hub writes before changes (type, id, instanceId) come first.
func stringField(data []byte, key string) string {
	prefix := []byte(`"` + key + `":"`)
	i := bytes.Index(data, prefix)
	if i < 0 {
		return ""
	}
	value := data[i+len(prefix):]
	end := bytes.IndexByte(value, '"')
	if end < 0 {
		return ""
	}
	return string(value[:end])
}

// drain reads conn until it closes and returns the close error.
func (s *sequence) drain(conn *websocket.Conn) *websocket.CloseError {
	s.t.Helper()
	for {
		require.NoError(s.t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
		_, data, err := conn.ReadMessage()
		if err != nil {
			var closeErr *websocket.CloseError
			require.ErrorAs(s.t, err, &closeErr, "after %d events", s.n)
			return closeErr
		}
		s.next(data)
	}
}

// readUntil reads conn until n events in all have arrived.
func (s *sequence) readUntil(conn *websocket.Conn, n int) {
	s.t.Helper()
	for s.n < n {
		require.NoError(s.t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
		_, data, err := conn.ReadMessage()
		require.NoError(s.t, err, "after %d events", s.n)
		s.next(data)
	}
}

// peakRSS returns the VmHWM line of /proc/self/status, or "unknown".
func peakRSS() string {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if value, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

func mb(bytes uint64) string { return fmt.Sprintf("%.1f", float64(bytes)/(1<<20)) }
