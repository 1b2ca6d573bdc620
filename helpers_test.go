package main

import (
	"context"

	"encoding/json"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"net/http"
	"testing"
	"time"
)

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpOK(url string) bool {
	resp, err := http.Get("http://" + url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// getJSON sends a GET with a bearer token, decodes the body into out and
// returns the status code.
func getJSON(t *testing.T, url, token string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decoding %s: %v", url, err)
	}
	return resp.StatusCode
}

// newDatabase creates a test database with schema and returns its URL and
// a pool on it that closes when the test ends.
func newDatabase(t *testing.T, schema string) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDB(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), schema); err != nil {
		t.Fatal(err)
	}
	return url, pool
}

// startReady starts the service on url and waits until /readyz passes.
func startReady(t *testing.T, url string, env ...string) *process {
	t.Helper()
	svc := startService(t, url, env...)
	waitUntil(t, 30*time.Second, "service ready", func() bool { return httpOK(svc.addr + "/readyz") })
	return svc
}
