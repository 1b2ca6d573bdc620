package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

// A slow endpoint with a backlog holds PerEndpoint workers, and the other
// endpoints' deliveries keep flowing past its queue.
func TestSlowEndpointDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release := make(chan struct{})
	slow := newReceiver(t, func(received, int, http.Header) int {
		<-release
		return http.StatusNoContent
	})
	healthy := newReceiver(t, nil)
	slowHook := b.register(t, slow.URL, "*")
	healthyHook := b.register(t, healthy.URL, "*")
	b.run(t, delivery.Config{Workers: 8, PerEndpoint: 2, ClaimBatch: 16, Timeout: time.Minute, Lease: 2 * time.Minute})
	// Registered after the dispatcher's and the server's cleanups, so it
	// runs first: both wait for the slow handlers.
	t.Cleanup(func() { close(release) })

	// Written in small transactions, so both endpoints' deliveries mix in
	// the claims.
	const events = 200
	b.writeRows(t, events)
	b.waitDelivered(t, healthyHook, events)

	require.Len(t, healthy.requests(), events)
	require.LessOrEqual(t, len(slow.requests()), 2, "at most PerEndpoint attempts reach the slow endpoint at once")
	for _, d := range b.deliveries(t, slowHook) {
		require.Equal(t, store.StatusPending, d.Status)
	}
}

// Deliveries waiting behind a failed delivery of the same row are moved to
// its next attempt, out of the claims' way. They are due again as soon as it
// is retried by hand, long before its scheduled retry, and follow it.
func TestBlockedDeliveriesDeferredAndWoken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var healthy atomic.Bool
	rc := newReceiver(t, func(received, int, http.Header) int {
		if healthy.Load() {
			return http.StatusNoContent
		}
		return http.StatusServiceUnavailable
	})
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: []time.Duration{time.Hour}})

	ids := b.write(t, "a", "a", "a")
	byEvent := func() map[string]store.DeliveryInfo {
		m := map[string]store.DeliveryInfo{}
		for _, d := range b.deliveries(t, hook) {
			m[d.EventID] = d
		}
		return m
	}
	deferred := func(ids []string) bool {
		m := byEvent()
		first := m[ids[0]]
		if len(first.Attempts) != 1 || first.NextAttempt == nil || time.Until(*first.NextAttempt) < 30*time.Minute {
			return false
		}
		for _, id := range ids[1:] {
			if next := m[id].NextAttempt; next == nil || !next.Equal(*first.NextAttempt) {
				return false
			}
		}
		return true
	}
	// Recording the failure moves the deliveries stored before it, and the
	// dispatcher's periodic pass the ones stored after it.
	waitFor(t, 30*time.Second, "the later deliveries deferred to the first one's retry", func() bool { return deferred(ids) })
	ids = append(ids, b.write(t, "a")...)
	waitFor(t, 30*time.Second, "a delivery stored after the failure deferred too", func() bool { return deferred(ids) })

	healthy.Store(true)
	require.NoError(t, b.store.RetryDelivery(context.Background(), hook, byEvent()[ids[0]].ID))
	waitFor(t, 30*time.Second, "every delivery delivered", func() bool {
		for _, d := range byEvent() {
			if d.Status != store.StatusDelivered {
				return false
			}
		}
		return true
	})

	var order []string
	for _, r := range rc.requests() {
		order = append(order, r.id)
	}
	require.Equal(t, append([]string{ids[0]}, ids...), order, "one failed attempt, then the row in commit order")
}

// Deliveries that wait in the local queue for a slow endpoint longer than
// their lease are renewed before they are sent, not claimed a second time:
// each event reaches the endpoint once.
func TestSlowEndpointGetsEachDeliveryOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(received, int, http.Header) int {
		time.Sleep(150 * time.Millisecond)
		return http.StatusNoContent
	})
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Workers: 4, PerEndpoint: 2, Timeout: 500 * time.Millisecond, Lease: time.Second})

	// Sent two at a time, the backlog takes about 4.5 s to drain, so the
	// last claims wait well past their 1 s lease.
	const events = 60
	b.writeRows(t, events)
	b.waitDelivered(t, hook, events)

	sends := map[string]int{}
	for _, r := range rc.requests() {
		sends[r.id]++
	}
	require.Len(t, sends, events)
	for id, n := range sends {
		require.Equal(t, 1, n, "event %s was sent %d times", id, n)
	}
	for _, d := range b.deliveries(t, hook) {
		require.Len(t, d.Attempts, 1, "delivery of %s", d.EventID)
	}
}

// writeRows writes n events of rows row0 to row<n-1>, ten per transaction,
// so that deliveries of several endpoints mix in the claims.
func (b *bundle) writeRows(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i += 10 {
		instances := make([]string, min(10, n-i))
		for j := range instances {
			instances[j] = fmt.Sprintf("row%d", i+j)
		}
		b.write(t, instances...)
	}
}

// waitDelivered waits up to 30 s until n deliveries of the endpoint are
// delivered.
func (b *bundle) waitDelivered(t *testing.T, webhookID string, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d deliveries to %s", n, webhookID), func() bool {
		delivered := 0
		for _, d := range b.deliveries(t, webhookID) {
			if d.Status == store.StatusDelivered {
				delivered++
			}
		}
		return delivered == n
	})
}
