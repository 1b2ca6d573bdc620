package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
)

// hookReceiver counts deliveries by webhook-id and checks each signature.
type hookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	secret   string
	seen     map[string]int
	requests int
	badSig   int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	r := &hookReceiver{seen: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.secret != "" && delivery.Verify(r.secret, req.Header, body, time.Minute) != nil {
			r.badSig++
		}
		r.seen[req.Header.Get("webhook-id")]++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) counts() (distinct, requests, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen), r.requests, r.badSig
}

// registerWebhook registers url for every event through the API and returns
// the generated secret.
func registerWebhook(t *testing.T, addr, url string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"url": url, "events": []string{"*"}})
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer test-token-0123456789")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var created struct {
		Secret string `json:"secret"`
	}
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	require.NotEmpty(t, created.Secret)
	return created.Secret
}

func TestWebhooksSurviveSIGKILLAndTwoInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id bigint PRIMARY KEY, payload text)`)
	recv := newHookReceiver(t)

	first := startReady(t, url, "CIVICBASE_DEV=true")
	secret := registerWebhook(t, first.addr, recv.URL+"/hook")
	recv.mu.Lock()
	recv.secret = secret
	recv.mu.Unlock()
	// A second instance on the same database shares the delivery queue.
	second := startService(t, url, "CIVICBASE_DEV=true")
	waitUntil(t, 30*time.Second, "second instance up", func() bool { return httpOK(second.addr + "/healthz") })

	const rows = 10_000
	_, err := pool.Exec(ctx, `INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, $1) g`, rows)
	require.NoError(t, err)
	waitUntil(t, 60*time.Second, "deliveries under way", func() bool { d, _, _ := recv.counts(); return d > 1000 })
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	_ = first.waitExit(t, 10*time.Second)
	killedAt, _, _ := recv.counts()
	require.Less(t, killedAt, rows, "the kill must land while deliveries are in flight")

	startService(t, url, "CIVICBASE_DEV=true")
	waitUntil(t, 120*time.Second, "every event delivered", func() bool { d, _, _ := recv.counts(); return d >= rows })
	// Deliveries the killed instance sent but did not record are sent again
	// when their lease ends, and only then recorded.
	waitUntil(t, 60*time.Second, "every delivery recorded", func() bool {
		var delivered int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM civicbase.deliveries WHERE status = 'delivered'`).Scan(&delivered))
		return delivered == rows
	})

	distinct, requests, badSig := recv.counts()
	require.Equal(t, rows, distinct)
	require.Zero(t, badSig, "every request verifies with the secret")
	t.Logf("%d events, %d requests (%d duplicates, each with an id already seen)", distinct, requests, requests-distinct)
}
