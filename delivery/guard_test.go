package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

// An endpoint whose address the guard rejects at connect time, because its
// name now resolves to a private address or it was registered in
// development mode, is disabled as after a 410. Its deliveries wait
// instead of each going dead after one attempt.
func TestGuardRefusalKeepsBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(received, int, http.Header) int { return http.StatusOK })
	hook := b.register(t, rc.URL, "*")
	instances := make([]string, 50)
	for i := range instances {
		instances[i] = fmt.Sprintf("u%d", i)
	}
	b.write(t, instances...)

	runDispatcherUntil(t, b, delivery.Config{Schedule: []time.Duration{time.Minute}, PollInterval: 20 * time.Millisecond},
		"the guard to disable the endpoint", func() bool { return b.disabled(t, hook) })

	require.Empty(t, rc.requests(), "the guard let a request through")
	var dead int
	for _, info := range b.deliveries(t, hook) {
		if info.Status == store.StatusDead {
			dead++
		}
	}
	require.Zero(t, dead, "deliveries went dead because the guard refused the endpoint's address")
	w, err := b.store.Webhook(context.Background(), hook)
	require.NoError(t, err)
	require.NotNil(t, w.DisabledReason)
	require.Contains(t, *w.DisabledReason, "the address guard rejected the endpoint")
	require.Contains(t, *w.DisabledReason, "127.0.0.1")
}

// runDispatcherUntil runs a dispatcher with cfg until cond holds, for at
// most 30 s, and stops it. Unlike bundle.run, it keeps cfg.AllowPrivate.
func runDispatcherUntil(t *testing.T, b *bundle, cfg delivery.Config, what string, cond func() bool) {
	t.Helper()
	disp := delivery.NewDispatcher(cfg, b.store, nil, logger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- disp.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	waitFor(t, 30*time.Second, what, cond)
}

// disabled reports whether the endpoint is disabled.
func (b *bundle) disabled(t *testing.T, webhookID string) bool {
	t.Helper()
	w, err := b.store.Webhook(context.Background(), webhookID)
	require.NoError(t, err)
	return !w.Active
}

// A guard rejection does not use up a retry. After the endpoint is enabled
// again on an instance that allows its address, a first 503 is retried on
// schedule rather than making the delivery dead.
func TestGuardRefusalKeepsRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(received, int, http.Header) int { return http.StatusServiceUnavailable })
	hook := b.register(t, rc.URL, "*")
	b.write(t, "u1")
	schedule := []time.Duration{time.Minute}

	runDispatcherUntil(t, b, delivery.Config{Schedule: schedule, PollInterval: 20 * time.Millisecond},
		"the guard to disable the endpoint", func() bool { return b.disabled(t, hook) })

	active := true
	_, err := b.store.UpdateWebhook(context.Background(), hook, store.WebhookUpdate{Active: &active})
	require.NoError(t, err)
	runDispatcherUntil(t, b, delivery.Config{Schedule: schedule, PollInterval: 20 * time.Millisecond, AllowPrivate: true},
		"the 503 to be recorded", func() bool {
			infos := b.deliveries(t, hook)
			return len(infos) == 1 && len(infos[0].Attempts) == 2
		})

	require.Len(t, rc.requests(), 1, "one request, answered 503")
	infos := b.deliveries(t, hook)
	require.Len(t, infos, 1)
	require.Equal(t, store.StatusPending, infos[0].Status,
		"a first 503 went dead: the guard refusal counted as one of the schedule's retries")
}
