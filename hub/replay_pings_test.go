package hub_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A client that reads a long replay and sends application pings meanwhile,
// as a browser does to check its connection, must keep its session: the
// pings wait behind the replay, but the session must go on reading the
// pongs to the hub's protocol pings. More than pendingLimit queued pings
// block melody's read loop, and the session then ends with 1006 once the
// replay outlasts the pong wait.
func TestReplayWithClientPingsOutlastsPongWait(t *testing.T) {
	t.Parallel()
	b := setupReplay(t, 4500, 2*time.Second)
	c := b.connect(t)

	start := time.Now()
	b.subscribeSince(c, "s1", "UserProfile")
	// From here on only the pinger writes to the connection: gorilla allows
	// one writer at a time.
	stop := make(chan struct{})
	var pinger sync.WaitGroup
	pinger.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = c.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
			if c.conn.WriteJSON(map[string]string{"type": "ping"}) != nil {
				return
			}
		}
	})
	defer pinger.Wait()
	defer close(stop)

	got := make([]string, 0, len(b.ids))
	for len(got) < len(b.ids) {
		m := c.readSlowly()
		if m.Type == "pong" {
			continue
		}
		require.Equal(t, "create", m.Type, "message %s", m.raw)
		got = append(got, m.ID)
	}
	require.Equal(t, b.ids, got, "every stored event once, in order")
	require.Greater(t, time.Since(start), 2*b.cfg.PongWait, "the replay must outlast the pong wait to test it")
	for {
		if m := c.read(); m.Type == "subscribed" {
			break
		}
	}
}
