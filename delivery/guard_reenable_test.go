package delivery_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

// runDispatcher runs a dispatcher with cfg for d and stops it.
func runDispatcher(t *testing.T, b *bundle, cfg delivery.Config, d time.Duration) {
	t.Helper()
	disp := delivery.NewDispatcher(cfg, b.store, nil, logger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- disp.Run(ctx) }()
	time.Sleep(d)
	cancel()
	require.NoError(t, <-done)
}

// A guard refusal disables the endpoint before any request is sent, so it
// must not use up one of the delivery's retries: after the endpoint is
// re-enabled on an instance that allows its address, a first transient
// failure must be retried by the schedule, not make the delivery dead.
func TestGuardRefusalKeepsRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(received, int, http.Header) int { return http.StatusServiceUnavailable })
	hook := b.register(t, rc.URL, "*")
	b.write(t, "u1")
	schedule := []time.Duration{time.Minute}

	runDispatcher(t, b, delivery.Config{Schedule: schedule, PollInterval: 20 * time.Millisecond}, 500*time.Millisecond)
	w, err := b.store.Webhook(context.Background(), hook)
	require.NoError(t, err)
	require.False(t, w.Active, "the guard disabled the endpoint")

	active := true
	_, err = b.store.UpdateWebhook(context.Background(), hook, store.WebhookUpdate{Active: &active})
	require.NoError(t, err)
	runDispatcher(t, b, delivery.Config{Schedule: schedule, PollInterval: 20 * time.Millisecond, AllowPrivate: true}, 500*time.Millisecond)

	require.Len(t, rc.requests(), 1, "one request, answered 503")
	infos := b.deliveries(t, hook)
	require.Len(t, infos, 1)
	require.Equal(t, store.StatusPending, infos[0].Status,
		"a first 503 went dead: the guard refusal counted as one of the schedule's retries")
}
