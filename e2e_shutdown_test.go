package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// slowReceiver responds to each webhook after a delay and records which
// requests it finished and which the client abandoned.
type slowReceiver struct {
	*httptest.Server
	delay     time.Duration
	mu        sync.Mutex
	started   map[string]time.Time // by webhook-id
	completed map[string]bool
	abandoned []string
	inflight  int
}

func newSlowReceiver(t *testing.T, delay time.Duration) *slowReceiver {
	t.Helper()
	r := &slowReceiver{delay: delay, started: map[string]time.Time{}, completed: map[string]bool{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		r.started[id] = time.Now()
		r.inflight++
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.inflight--
			r.mu.Unlock()
		}()
		timer := time.NewTimer(r.delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-req.Context().Done():
			r.mu.Lock()
			r.abandoned = append(r.abandoned, id)
			r.mu.Unlock()
			return
		}
		w.WriteHeader(http.StatusNoContent)
		r.mu.Lock()
		r.completed[id] = true
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *slowReceiver) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight
}

// startedBefore returns the webhook-ids of requests that arrived before t.
func (r *slowReceiver) startedBefore(t time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, at := range r.started {
		if at.Before(t) {
			ids = append(ids, id)
		}
	}
	return ids
}

// unstoredRowsInSlot returns the ids of rows of table items that the slot
// still holds, that is inserts after its confirmed flush position, by
// peeking at its changes without consuming them. The slot must be inactive.
func unstoredRowsInSlot(t *testing.T, pool *pgxpool.Pool, slot string) map[string]bool {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', 'civicbase')`, slot)
	require.NoError(t, err)
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var data []byte
		require.NoError(t, rows.Scan(&data))
		msg, err := pglogrepl.Parse(data)
		require.NoError(t, err)
		if insert, ok := msg.(*pglogrepl.InsertMessage); ok {
			ids[string(insert.Tuple.Columns[0].Data)] = true
		}
	}
	require.NoError(t, rows.Err())
	return ids
}

func TestSIGTERMFinishesDeliveriesInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id bigint PRIMARY KEY)`)
	recv := newSlowReceiver(t, 2*time.Second)
	cfgPath := filepath.Join(t.TempDir(), "civicbase.yaml")
	slot := slotName(url)
	cfg := "slot: " + slot + "\nshutdownTimeout: 10s\nwebhooks:\n  timeout: 5s\n  lease: 30s\n"
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	svc := startReady(t, url, "CIVICBASE_DEV=true", "CIVICBASE_CONFIG="+cfgPath)
	registerWebhook(t, svc.addr, recv.URL+"/hook")
	ws := dialRealtime(t, svc.addr, "Item", "")

	// One row per transaction, until the service has exited, so changes
	// arrive while it shuts down.
	var written atomic.Int64
	stopWriter := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for i := int64(1); ; i++ {
			select {
			case <-stopWriter:
				writerDone <- nil
				return
			default:
			}
			if _, err := pool.Exec(ctx, `INSERT INTO items VALUES ($1)`, i); err != nil {
				writerDone <- err
				return
			}
			written.Store(i)
		}
	}()
	waitUntil(t, 60*time.Second, "10 deliveries in flight", func() bool { return recv.inFlight() >= 10 })

	signaled := time.Now()
	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, ws.conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	var closeErr *websocket.CloseError
	for {
		if _, _, err := ws.conn.ReadMessage(); err != nil {
			require.ErrorAs(t, err, &closeErr)
			break
		}
	}
	exitErr := svc.waitExit(t, 30*time.Second)
	exited := time.Now()
	close(stopWriter)
	require.NoError(t, <-writerDone)

	require.NoError(t, exitErr, "SIGTERM is a clean exit")
	require.Equal(t, 4009, closeErr.Code, "sessions are told the server is restarting")
	inflight := recv.startedBefore(signaled)
	require.GreaterOrEqual(t, len(inflight), 10)
	recv.mu.Lock()
	abandoned := recv.abandoned
	recv.mu.Unlock()
	require.Empty(t, abandoned, "no request in flight at SIGTERM is cut off")
	for _, id := range inflight {
		var status string
		var attempts int
		err := pool.QueryRow(ctx, `SELECT status, attempts FROM civicbase.deliveries WHERE event_id = $1`, id).Scan(&status, &attempts)
		require.NoError(t, err, id)
		require.Equal(t, "delivered", status, "delivery of %s in flight at SIGTERM", id)
		require.Equal(t, 1, attempts, "delivery of %s in flight at SIGTERM", id)
	}

	// The slot resumes after its confirmed flush position, so every row
	// before that position must be stored. Each row is therefore either
	// stored or still in the slot.
	stored := map[string]bool{}
	ids, err := pool.Query(ctx, `SELECT instance_id FROM civicbase.events`)
	require.NoError(t, err)
	for ids.Next() {
		var id string
		require.NoError(t, ids.Scan(&id))
		stored[id] = true
	}
	require.NoError(t, ids.Err())
	pending := unstoredRowsInSlot(t, pool, slot)
	total := written.Load()
	var missing []int64
	for i := int64(1); i <= total; i++ {
		key := strconv.FormatInt(i, 10)
		if !stored[key] && !pending[key] {
			missing = append(missing, i)
		}
	}
	require.Empty(t, missing, "rows neither stored nor left in the slot, so lost")
	requireAckStored(t, pool, slot)
	require.Contains(t, svc.output.String(), "shutdown complete")
	t.Logf("%d rows written, %d stored, %d left in the slot; %d deliveries in flight at SIGTERM; exit %s after SIGTERM",
		total, len(stored), len(pending), len(inflight), exited.Sub(signaled).Round(time.Millisecond))
}
