package hub_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

func TestSlowClientClosedWith4008(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.SendBuffer = 8
	b := setup(t, cfg)
	slow := dial(t, b.url)
	slow.authenticate(adminToken)
	slow.subscribe("s1", []string{"UserProfile"}, nil)
	fast := dial(t, b.url)
	fast.authenticate(adminToken)
	fast.subscribe("s1", []string{"UserProfile"}, nil)

	// Write 64 KiB events until the hub gives up on the slow client, which
	// reads nothing meanwhile. Its connection backs up once the kernel's
	// socket buffers are full, a few MiB on Linux.
	changes := `{"blob":"` + strings.Repeat("x", 64<<10) + `"}`
	for written := 0; b.hub.SlowClosed() == 0; written += 5 {
		require.Less(t, written, 1000, "slow client was never closed")
		batch := make([]store.Event, 5)
		for i := range batch {
			batch[i] = b.event("UserProfile", "data.created", changes)
		}
		b.write(t, batch...)
		for i := range batch {
			require.Equal(t, batch[i].ID, fast.readType("create").ID)
		}
	}

	// The slow client reads what was queued before the close frame: the
	// last event it gets is the one the close reason names.
	closeErr, msgs := slow.readClose()
	require.Equal(t, 4008, closeErr.Code)
	require.NotEmpty(t, msgs)
	var reason struct{ LastID string }
	require.NoError(t, json.Unmarshal([]byte(closeErr.Text), &reason), "reason %q", closeErr.Text)
	require.Equal(t, msgs[len(msgs)-1].ID, reason.LastID)

	after := b.event("UserProfile", "data.created", `{}`)
	b.write(t, after)
	require.Equal(t, after.ID, fast.readType("create").ID)
	require.Equal(t, int64(1), b.hub.SlowClosed())
}
