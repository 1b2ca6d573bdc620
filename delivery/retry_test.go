package delivery_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

// Retry-After counts from the response, so a slow 429 must not bring the
// next attempt forward.
func TestRetryAfterCountsFromResponse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const answerDelay = 700 * time.Millisecond
	rc := newReceiver(t, func(_ received, n int, h http.Header) int {
		if n == 0 {
			time.Sleep(answerDelay)
			h.Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: fastSchedule})

	b.write(t, "u1")
	waitFor(t, 10*time.Second, "delivered", func() bool {
		d := b.deliveries(t, hook)
		return len(d) == 1 && d[0].Status == store.StatusDelivered
	})

	got := rc.requests()
	require.Len(t, got, 2)
	respondedAt := got[0].at.Add(answerDelay)
	require.GreaterOrEqual(t, got[1].at.Sub(respondedAt), 900*time.Millisecond,
		"second attempt came %s after the 429 that asked for 1s", got[1].at.Sub(respondedAt))
}

// The retry schedule counts from the failure: after a timed-out attempt the
// next one waits the first schedule step, not zero.
func TestRetryDelayAfterTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const timeout = 600 * time.Millisecond
	const step = 500 * time.Millisecond
	release := make(chan struct{})
	rc := newReceiver(t, func(_ received, n int, _ http.Header) int {
		if n == 0 {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		return http.StatusOK
	})
	// Registered after newReceiver, so it runs before the server closes.
	t.Cleanup(func() { close(release) })
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: []time.Duration{step, step, step}, Timeout: timeout})

	b.write(t, "u1")
	waitFor(t, 10*time.Second, "delivered", func() bool {
		d := b.deliveries(t, hook)
		return len(d) == 1 && d[0].Status == store.StatusDelivered
	})

	got := rc.requests()
	require.Len(t, got, 2)
	gap := got[1].at.Sub(got[0].at.Add(timeout))
	require.GreaterOrEqual(t, gap, step*9/10, "retry came %s after the timed-out attempt ended", gap)
}
