package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
)

// outageReceiver is a webhook endpoint that responds with the status code the
// test sets, and records every request in arrival order.
type outageReceiver struct {
	secret string
	status atomic.Int32

	mu  sync.Mutex
	log []outageRequest
}

type outageRequest struct {
	id       string // webhook-id
	instance string
	status   int
}

func (r *outageReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var event struct {
		InstanceID string `json:"instanceId"`
	}
	status := int(r.status.Load())
	if json.Unmarshal(body, &event) != nil || delivery.Verify(r.secret, req.Header, body, time.Minute) != nil {
		status = http.StatusBadRequest // makes the delivery dead, which the test checks
	}
	// The request is recorded with its status before the response is
	// written, so a later request of the same row, which the service sends
	// only after this one succeeded, is always recorded after it.
	r.mu.Lock()
	r.log = append(r.log, outageRequest{id: req.Header.Get("webhook-id"), instance: event.InstanceID, status: status})
	r.mu.Unlock()
	w.WriteHeader(status)
}

func (r *outageReceiver) requests() []outageRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// TestWebhooksSurviveReceiverOutage takes a receiver down for several
// retries, first refusing connections and then responding with 503, while
// rows change several times each. Once it is back, every event arrives, and
// the events of each row arrive in commit order: none is sent before the one
// before it was acknowledged.
func TestWebhooksSurviveReceiverOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL)`)
	cfgPath := filepath.Join(t.TempDir(), "civicbase.yaml")
	cfg := "slot: slot_" + strings.TrimSuffix(url[strings.LastIndex(url, "/")+1:], "?sslmode=disable") + "\n" +
		"webhooks:\n  timeout: 2s\n  lease: 5s\n  schedule: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]\n"
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	svc := startReady(t, url, "CIVICBASE_DEV=true", "CIVICBASE_CONFIG="+cfgPath)

	// Nothing listens on the endpoint's address yet: connections are refused.
	addr := freeAddr(t)
	recv := &outageReceiver{}
	recv.secret = registerWebhook(t, svc.addr, "http://"+addr+"/hook")

	// 20 rows, each inserted and updated three times; 5 of them deleted.
	for _, stmt := range []string{
		`INSERT INTO items SELECT g, 0 FROM generate_series(1, 20) g`,
		`UPDATE items SET n = n + 1`,
		`UPDATE items SET n = n + 1`,
		`UPDATE items SET n = n + 1`,
		`DELETE FROM items WHERE id <= 5`,
	} {
		_, err := pool.Exec(ctx, stmt)
		require.NoError(t, err)
	}
	waitUntil(t, 60*time.Second, "two refused attempts for every row", func() bool {
		var refused int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(DISTINCT row_key) FROM civicbase.deliveries
			WHERE attempts >= 2 AND last_error LIKE '%connection refused%'`).Scan(&refused))
		return refused == 20
	})

	// The endpoint comes up and responds with 503 to two more attempts per row.
	recv.status.Store(http.StatusServiceUnavailable)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: recv}}
	srv.Start()
	t.Cleanup(srv.Close)
	waitUntil(t, 60*time.Second, "two 503 answers per row", func() bool {
		answered := map[string]int{}
		for _, r := range recv.requests() {
			answered[r.instance]++
		}
		return len(answered) == 20 && slices.Min(slices.Collect(maps.Values(answered))) >= 2
	})

	// Back up; rows keep changing meanwhile.
	recv.status.Store(http.StatusNoContent)
	_, err = pool.Exec(ctx, `UPDATE items SET n = n + 1`)
	require.NoError(t, err)
	const events = 20*4 + 5 + 15
	waitUntil(t, 120*time.Second, "every delivery delivered", func() bool {
		var delivered, dead int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'delivered'),
			count(*) FILTER (WHERE status = 'dead') FROM civicbase.deliveries`).Scan(&delivered, &dead))
		require.Zero(t, dead, "no delivery is dead")
		return delivered == events
	})

	// Each row's events in commit order, from the event store.
	rows, err := pool.Query(ctx, `SELECT instance_id, id FROM civicbase.events ORDER BY id`)
	require.NoError(t, err)
	byRow := map[string][]string{}
	for rows.Next() {
		var instance, id string
		require.NoError(t, rows.Scan(&instance, &id))
		byRow[instance] = append(byRow[instance], id)
	}
	require.NoError(t, rows.Err())
	require.Len(t, byRow, 20)

	log := recv.requests()
	acked := map[string]int{} // event id → position of its first 2xx in log
	first := map[string]int{} // event id → position of its first request
	for i, r := range log {
		require.NotEqual(t, http.StatusBadRequest, r.status, "request %d (%s) has a bad body or signature", i, r.id)
		if _, ok := first[r.id]; !ok {
			first[r.id] = i
		}
		if _, ok := acked[r.id]; !ok && r.status == http.StatusNoContent {
			acked[r.id] = i
		}
	}
	require.Len(t, acked, events, "every event acknowledged")
	for instance, ids := range byRow {
		for i := 1; i < len(ids); i++ {
			require.Greater(t, first[ids[i]], acked[ids[i-1]],
				"row %s: event %s was sent before event %s was acknowledged", instance, ids[i], ids[i-1])
		}
	}
	t.Logf("%d events, %d requests", events, len(log))
}
