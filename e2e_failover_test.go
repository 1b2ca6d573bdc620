package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// changeLog records which event ids arrived for which rows, on one channel.
type changeLog struct {
	mu       sync.Mutex
	rowOf    map[string]string // event id to instanceId
	idOf     map[string]string // instanceId to its first event id
	messages int
	// conflicts lists rows that arrived under a second event id, which a
	// replay must never produce.
	conflicts []string
}

func newChangeLog() *changeLog {
	return &changeLog{rowOf: map[string]string{}, idOf: map[string]string{}}
}

func (l *changeLog) add(eventID, row string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.messages++
	l.rowOf[eventID] = row
	if first, ok := l.idOf[row]; !ok {
		l.idOf[row] = eventID
	} else if first != eventID {
		l.conflicts = append(l.conflicts, fmt.Sprintf("row %s: %s and %s", row, first, eventID))
	}
}

func (l *changeLog) rows() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.idOf)
}

// newChangeReceiver starts a webhook receiver that records every delivery
// in log and responds 204.
func newChangeReceiver(t *testing.T, log *changeLog) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			InstanceID string `json:"instanceId"`
		}
		data, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(data, &body); err != nil || body.InstanceID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		log.add(req.Header.Get("webhook-id"), body.InstanceID)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fleet is the set of running instances on one database.
type fleet struct {
	mu        sync.Mutex
	instances []*process
}

func (f *fleet) addrs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.instances))
	for i, p := range f.instances {
		out[i] = p.addr
	}
	return out
}

func (f *fleet) replace(old, replacement *process) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances = slices.DeleteFunc(f.instances, func(p *process) bool { return p == old })
	f.instances = append(f.instances, replacement)
}

// leader returns the instance that reports the leader role and is ready,
// which means it streams the slot, or nil when there is none.
func (f *fleet) leader() *process {
	f.mu.Lock()
	defer f.mu.Unlock()
	var found *process
	for _, p := range f.instances {
		code, body := getReadyz(p.addr)
		if code == http.StatusOK && body.Role == "leader" {
			if found != nil {
				return nil // two leaders would be a bug; wait and let the caller fail
			}
			found = p
		}
	}
	return found
}

// realtimeMessage is the part of a hub message that the follower reads.
type realtimeMessage struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	InstanceID string `json:"instanceId"`
	Code       string `json:"code"`
	Message    string `json:"message"`
}

// followRealtime subscribes to model Item on one of the live instances and
// records every event in log. When a session ends it reconnects, to the
// next live instance, with since set to the last id it received. It
// returns when ctx ends, or with an error message from the hub.
func followRealtime(ctx context.Context, f *fleet, log *changeLog) error {
	var last string
	for attempt := 0; ctx.Err() == nil; attempt++ {
		addrs := f.addrs()
		msg, err := followOnce(ctx, addrs[attempt%len(addrs)], last, func(m realtimeMessage) {
			log.add(m.ID, m.InstanceID)
			last = m.ID
		})
		if msg != nil {
			return fmt.Errorf("hub sent an error: %s: %s", msg.Code, msg.Message)
		}
		if err != nil && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// followOnce runs one realtime session until it fails or ctx ends. It
// returns an error message from the hub, if one came.
func followOnce(ctx context.Context, addr, since string, onEvent func(realtimeMessage)) (*realtimeMessage, error) {
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := dialer.DialContext(ctx, "ws://"+addr+"/v1/realtime", nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	if err := conn.WriteJSON(map[string]any{"type": "authenticate", "token": "test-token-0123456789"}); err != nil {
		return nil, err
	}
	sub := map[string]any{"type": "subscribe", "id": "s1", "models": []string{"Item"}}
	if since != "" {
		sub["since"] = since
	}
	if err := conn.WriteJSON(sub); err != nil {
		return nil, err
	}
	for {
		// An instance that was killed never closes the connection, so a
		// silent session is ended and opened again elsewhere.
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var m realtimeMessage
		if err := conn.ReadJSON(&m); err != nil {
			return nil, err
		}
		switch m.Type {
		case "create":
			onEvent(m)
		case "error":
			return &m, nil
		}
	}
}

// firstStoredAfter returns when the first event stored after t was stored,
// or false when none is.
func firstStoredAfter(t *testing.T, pool *pgxpool.Pool, after time.Time) (time.Time, bool) {
	t.Helper()
	var first *time.Time
	err := pool.QueryRow(context.Background(), `SELECT min(stored_at) FROM civicbase.events WHERE stored_at > $1`, after).Scan(&first)
	require.NoError(t, err)
	if first == nil {
		return time.Time{}, false
	}
	return *first, true
}

// streamingAt returns the time of the first "replication started" line
// after t in the log of any of f's instances.
func (f *fleet) streamingAt(after time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var first time.Time
	for _, p := range f.instances {
		for line := range strings.Lines(p.output.String()) {
			if !strings.Contains(line, `msg="replication started"`) {
				continue
			}
			stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			at, err := time.Parse(time.RFC3339Nano, stamp)
			if err == nil && at.After(after) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
	}
	return first, !first.IsZero()
}

func TestFailoverUnderSIGKILLLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id bigint PRIMARY KEY, payload text)`)
	webhooks, realtime := newChangeLog(), newChangeLog()
	recv := newChangeReceiver(t, webhooks)

	const rows, perTxn, kills = 100_000, 100, 5
	f := &fleet{}
	first := startReady(t, url, "CIVICBASE_DEV=true")
	registerWebhook(t, first.addr, recv.URL+"/hook")
	f.instances = []*process{first, startReady(t, url, "CIVICBASE_DEV=true")}
	waitUntil(t, 30*time.Second, "one leader", func() bool { return f.leader() != nil })

	followCtx, stopFollowing := context.WithCancel(ctx)
	followDone := make(chan error, 1)
	go func() { followDone <- followRealtime(followCtx, f, realtime) }()
	stopFollower := sync.OnceValue(func() error {
		stopFollowing()
		return <-followDone
	})
	defer stopFollower()

	// Kill i happens once killAt[i] rows are written. The writer waits at
	// killAt[i]+5000 rows until it has, so every kill lands mid-workload
	// however slow the machine is.
	var written atomic.Int64
	killAt := [kills]int64{15_000, 30_000, 45_000, 60_000, 75_000}
	var killed [kills]chan struct{}
	for i := range killed {
		killed[i] = make(chan struct{})
	}
	writerDone := make(chan error, 1)
	go func() {
		// About 4,000 rows per second, so the workload takes about 25 s.
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		next := 0
		for start := int64(1); start <= rows; start += perTxn {
			for next < kills && start > killAt[next]+5000 {
				<-killed[next]
				next++
			}
			<-tick.C
			_, err := pool.Exec(ctx, `INSERT INTO items SELECT g, md5(g::text) FROM generate_series($1::bigint, $2::bigint) g`,
				start, start+perTxn-1)
			if err != nil {
				writerDone <- err
				return
			}
			written.Store(start + perTxn - 1)
		}
		writerDone <- nil
	}()

	var takeovers, firstStored []time.Duration
	for i := range kills {
		waitUntil(t, 120*time.Second, fmt.Sprintf("%d rows written", killAt[i]), func() bool { return written.Load() >= killAt[i] })
		var leader *process
		waitUntil(t, 60*time.Second, "a streaming leader", func() bool { leader = f.leader(); return leader != nil })
		killedAt := time.Now()
		require.NoError(t, leader.cmd.Process.Signal(syscall.SIGKILL))
		close(killed[i])
		_ = leader.waitExit(t, 10*time.Second)
		f.replace(leader, startService(t, url, "CIVICBASE_DEV=true"))

		var storedAt time.Time
		waitUntil(t, 60*time.Second, "an event stored by the next leader", func() bool {
			var ok bool
			storedAt, ok = firstStoredAfter(t, pool, killedAt)
			return ok
		})
		streaming, ok := f.streamingAt(killedAt)
		require.True(t, ok, "the next leader logged that replication started")
		takeovers = append(takeovers, streaming.Sub(killedAt).Round(time.Millisecond))
		firstStored = append(firstStored, storedAt.Sub(killedAt).Round(time.Millisecond))
	}
	require.NoError(t, <-writerDone)

	waitUntil(t, 180*time.Second, "every row delivered by webhook", func() bool { return webhooks.rows() >= rows })
	waitUntil(t, 180*time.Second, "every row received over WebSocket", func() bool { return realtime.rows() >= rows })
	require.NoError(t, stopFollower())

	var stored int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM civicbase.events`).Scan(&stored))
	require.Equal(t, rows, stored, "one stored event per change, replays included")
	requireNoGaps(t, pool)
	for name, log := range map[string]*changeLog{"webhook": webhooks, "websocket": realtime} {
		log.mu.Lock()
		require.Empty(t, log.conflicts, "%s: a row arrived under two event ids", name)
		require.Len(t, log.rowOf, rows, "%s: distinct event ids", name)
		require.Len(t, log.idOf, rows, "%s: distinct rows", name)
		log.mu.Unlock()
	}
	for row, id := range webhooks.idOf {
		require.Equal(t, id, realtime.idOf[row], "row %s has the same id on both channels", row)
	}
	t.Logf("after each SIGKILL: next leader streaming after %v, its first event stored after %v", takeovers, firstStored)
	t.Logf("webhook requests %d for %d events; WebSocket messages %d for %d events",
		webhooks.messages, rows, realtime.messages, rows)
}
