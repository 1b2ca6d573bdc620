package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMetricsEndpointListsEveryMetric(t *testing.T) {
	t.Parallel()
	url, pool := newDatabase(t, `CREATE TABLE items (id bigint PRIMARY KEY, payload text)`)
	svc := startReady(t, url, "CIVICBASE_DEV=true")
	receiver := newHookReceiver(t)
	registerWebhook(t, svc.addr, receiver.URL)

	// Labeled counters appear only once they count something, so one
	// change is captured and delivered first.
	_, err := pool.Exec(context.Background(), `INSERT INTO items VALUES (1, 'a')`)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "webhook delivered", func() bool {
		_, requests, _ := receiver.counts()
		return requests >= 1
	})

	names := []string{
		"civicbase_cdc_changes_total", "civicbase_cdc_events_total", "civicbase_cdc_lag_seconds",
		"civicbase_cdc_stored_lsn", "civicbase_cdc_stalled_seconds",
		"civicbase_slot_lag_bytes", "civicbase_slot_retained_wal_bytes", "civicbase_slot_active",
		"civicbase_slot_wal_status",
		"civicbase_delivery_attempts_total", "civicbase_delivery_attempt_duration_seconds",
		"civicbase_delivery_latency_seconds", "civicbase_delivery_pending",
		"civicbase_delivery_oldest_pending_seconds", "civicbase_webhooks_disabled",
		"civicbase_delivery_queue_snapshot_age_seconds",
		"civicbase_realtime_connections", "civicbase_realtime_messages_sent_total",
		"civicbase_realtime_slow_closes_total",
	}
	// The attempt is counted after the response is read, a moment after
	// the receiver has the request, so the check waits.
	var body string
	waitUntil(t, 10*time.Second, "every metric on /metrics", func() bool {
		body = getText(t, "http://"+svc.addr+"/metrics")
		for _, name := range names {
			if !strings.Contains(body, "\n# TYPE "+name+" ") {
				return false
			}
		}
		return true
	})
	for _, name := range names {
		require.Contains(t, body, "\n# TYPE "+name+" ", name)
	}
	require.Contains(t, body, `civicbase_cdc_changes_total{operation="insert",table="public.items"} 1`)
	require.Contains(t, body, `civicbase_slot_active 1`)
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}
