package hub_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/hub"
	"github.com/civicbase/civicbase/store"
)

func TestSlowClientClosedWith4008(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.SendBuffer = 8
	cfg.StallTimeout = 500 * time.Millisecond
	reg := prometheus.NewRegistry()
	cfg.Metrics = hub.NewMetrics(reg)
	b := setup(t, cfg)
	slow := dial(t, b.url)
	slow.authenticate(adminToken)
	slow.subscribe("s1", []string{"UserProfile"}, nil)
	fast := dial(t, b.url)
	fast.authenticate(adminToken)
	fast.subscribe("s1", []string{"UserProfile"}, nil)

	// Write 64 KiB events until the hub gives up on the slow client, which
	// reads nothing meanwhile. Its connection backs up once the kernel's
	// socket buffers are full, a few MiB on Linux. Then its catch-up waits
	// StallTimeout for the connection to take a message.
	start := time.Now()
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
	require.GreaterOrEqual(t, time.Since(start), cfg.StallTimeout, "closed before the stall timeout")

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
	require.Equal(t, 1.0, metricValue(t, reg, "civicbase_realtime_slow_closes_total"))
}

// A burst larger than SendBuffer sends a client that reads as fast as it
// can to the event store to catch up, instead of closing it.
func TestBurstReachesReadingClient(t *testing.T) {
	t.Parallel()
	t.Run("DefaultSendBuffer", func(t *testing.T) {
		t.Parallel()
		testBurst(t, testConfig())
	})
	t.Run("SendBuffer8", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.SendBuffer = 8
		testBurst(t, cfg)
	})
}

func testBurst(t *testing.T, cfg hub.Config) {
	t.Helper()
	b := setup(t, cfg)
	all := dial(t, b.url)
	all.authenticate(adminToken)
	all.subscribe("s1", []string{"UserProfile"}, nil)
	owner := dial(t, b.url)
	owner.authenticate(ownerToken(t, 1))
	owner.subscribe("s1", []string{"UserProfile"}, nil)

	// 2,000 events in one transaction; every third one is owner 1's.
	var ids, ownIDs []string
	burst := make([]store.Event, 2000)
	for i := range burst {
		ownerID := 2
		if i%3 == 0 {
			ownerID = 1
		}
		burst[i] = b.rowEvent("UserProfile", "data.created", fmt.Sprintf(`{"id":%d,"owner_id":%d}`, i, ownerID), "")
		ids = append(ids, burst[i].ID)
		if ownerID == 1 {
			ownIDs = append(ownIDs, burst[i].ID)
		}
	}
	b.write(t, burst...)

	require.Equal(t, ids, all.readIDs(len(ids)))
	require.Equal(t, ownIDs, owner.readIDs(len(ownIDs)))

	// Both rejoin the live stream and get the next event once.
	after := b.rowEvent("UserProfile", "data.created", `{"owner_id":1}`, "")
	b.write(t, after)
	require.Equal(t, after.ID, all.readType("create").ID)
	require.Equal(t, after.ID, owner.readType("create").ID)
	require.Equal(t, int64(0), b.hub.SlowClosed())
}
