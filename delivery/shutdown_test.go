package delivery_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

func TestShutdownFinishesAttemptInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	arrived := make(chan struct{}, 1)
	rc := newReceiver(t, func(received, int, http.Header) int {
		arrived <- struct{}{}
		time.Sleep(500 * time.Millisecond)
		return http.StatusNoContent
	})
	hook := b.register(t, rc.URL+"/hook", "*")
	stop := b.run(t, delivery.Config{ShutdownTimeout: 10 * time.Second})
	b.write(t, "u1")
	<-arrived

	stop()

	d := b.deliveries(t, hook)
	require.Len(t, d, 1)
	require.Equal(t, store.StatusDelivered, d[0].Status, "the attempt in flight at shutdown completes and is recorded")
	require.Len(t, d[0].Attempts, 1)
}

func TestShutdownTimeoutReleasesAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	arrived := make(chan struct{}, 1)
	hang := make(chan struct{})
	rc := newReceiver(t, func(received, int, http.Header) int {
		arrived <- struct{}{}
		<-hang
		return http.StatusNoContent
	})
	// Registered after newReceiver's cleanup, so it runs before the server
	// closes, which waits for the handler.
	t.Cleanup(func() { close(hang) })
	hook := b.register(t, rc.URL+"/hook", "*")
	stop := b.run(t, delivery.Config{ShutdownTimeout: 200 * time.Millisecond, Timeout: 20 * time.Second, Lease: time.Minute})
	b.write(t, "u1")
	<-arrived

	started := time.Now()
	stop()

	require.Less(t, time.Since(started), 10*time.Second, "Run returns soon after the shutdown timeout")
	d := b.deliveries(t, hook)
	require.Len(t, d, 1)
	require.Equal(t, store.StatusPending, d[0].Status)
	require.Empty(t, d[0].Attempts, "an attempt cut short by shutdown is not counted against the endpoint")
	require.NotNil(t, d[0].NextAttempt)
	require.WithinDuration(t, time.Now(), *d[0].NextAttempt, 5*time.Second, "the lease is released, so the delivery is due at once")
}
