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

// An endpoint that the connect-time guard refuses, because its name now
// resolves to a private address or because it was registered by an
// instance with CIVICBASE_DEV=true, must not lose its backlog: every
// delivery went dead after one attempt, hundreds per second, and only a
// replay brought them back. The deliveries must wait, as they do behind a
// 410, which disables the endpoint instead.
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
