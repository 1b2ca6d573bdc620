package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/hub"
	"github.com/civicbase/civicbase/store"
)

// replayBundle is a hub with a stored history to replay. Its send buffer
// and its connections' socket buffers are small and its events are 4 KiB.
// So a replay goes at the pace of a client that reads slowly, and few
// messages wait ahead of a ping. By estimate about 90 do: 8 in the send
// buffer, 16 in the hub's 64 KiB of write batching, and the rest in the
// socket buffers.
type replayBundle struct {
	*testBundle
	cfg   hub.Config
	since string   // id of the event before the history
	ids   []string // ids of the history, in order
}

// socketBuffer is the size in bytes of the hub's send buffer and the
// client's receive buffer of a replay test's connection. Linux doubles it.
const socketBuffer = 64 << 10

func setupReplay(t *testing.T, rows int, pongWait time.Duration) *replayBundle {
	t.Helper()
	cfg := testConfig()
	cfg.PongWait = pongWait
	cfg.SendBuffer = 8
	b := &replayBundle{cfg: cfg}
	b.testBundle = setupWith(t, cfg, func(conn net.Conn, state http.ConnState) {
		if state != http.StateNew {
			return
		}
		if err := conn.(*net.TCPConn).SetWriteBuffer(socketBuffer); err != nil {
			t.Errorf("setting the send buffer of the hub's connection: %v", err)
		}
	})

	before := b.event("UserProfile", "data.created", `{}`)
	b.write(t, before)
	b.since = before.ID
	changes := `{"blob":"` + strings.Repeat("x", 4<<10) + `"}`
	for len(b.ids) < rows {
		batch := make([]store.Event, min(1000, rows-len(b.ids)))
		for i := range batch {
			batch[i] = b.event("UserProfile", "data.created", changes)
			b.ids = append(b.ids, batch[i].ID)
		}
		b.write(t, batch...)
	}
	return b
}

// connect dials an authenticated client with a small receive buffer.
func (b *replayBundle) connect(t *testing.T) *wsClient {
	t.Helper()
	dialer := &websocket.Dialer{
		HandshakeTimeout: waitTimeout,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return conn, conn.(*net.TCPConn).SetReadBuffer(socketBuffer)
		},
	}
	c := dialWith(t, dialer, b.url)
	c.authenticate(adminToken)
	return c
}

// subscribeSince sends a subscribe of model with since set to the event
// before the history.
func (b *replayBundle) subscribeSince(c *wsClient, id, model string) {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "id": id, "models": []string{model}, "since": b.since})
}

// readSlowly reads one message after a pause of a millisecond.
func (c *wsClient) readSlowly() message {
	c.t.Helper()
	time.Sleep(time.Millisecond)
	return c.read()
}

// requireAlive checks that the session replies to a ping and gets a live
// event.
func (b *replayBundle) requireAlive(t *testing.T, c *wsClient) {
	t.Helper()
	c.send(map[string]string{"type": "ping"})
	c.readType("pong")
	live := b.event("UserProfile", "data.updated", `{}`)
	b.write(t, live)
	require.Equal(t, live.ID, c.readType("update").ID)
}

// A replay that outlasts the pong wait must not stop the session from
// reading pongs, or the session is closed with 1006 once the replay ends.
func TestReplayOutlastsPongWait(t *testing.T) {
	t.Parallel()
	b := setupReplay(t, 4500, 2*time.Second)
	c := b.connect(t)

	start := time.Now()
	b.subscribeSince(c, "s1", "UserProfile")
	got := make([]string, 0, len(b.ids))
	for range b.ids {
		m := c.readSlowly()
		require.Equal(t, "create", m.Type, "message %s", m.raw)
		got = append(got, m.ID)
	}
	sub := c.readType("subscribed")
	elapsed := time.Since(start)

	require.Equal(t, b.ids, got, "every stored event once, in order")
	require.Equal(t, b.ids[len(b.ids)-1], *sub.LiveFrom)
	require.Greater(t, elapsed, 2*b.cfg.PongWait, "the replay must outlast the pong wait to test it")
	b.requireAlive(t, c)
}

// Messages sent during a replay get their replies in the order they were
// sent, after the replay's subscribed reply. An unsubscribe sent before the
// replay of its subscription starts stops that replay too.
func TestReplayRepliesInOrder(t *testing.T) {
	t.Parallel()
	b := setupReplay(t, 1500, time.Minute)
	c := b.connect(t)

	b.subscribeSince(c, "s1", "UserProfile")
	c.send(map[string]string{"type": "ping"})
	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"Project"}})
	b.subscribeSince(c, "s2", "Project")
	c.send(map[string]any{"type": "subscribe", "id": "s3", "models": []string{"Project"}})
	b.subscribeSince(c, "s4", "UserProfile")
	c.send(map[string]string{"type": "unsubscribe", "id": "s4"})
	c.send(map[string]string{"type": "unsubscribe", "id": "none"})

	got := make([]string, 0, len(b.ids))
	for range b.ids {
		got = append(got, c.readSlowly().ID)
	}
	require.Equal(t, b.ids, got)
	require.Equal(t, "s1", c.readType("subscribed").ID)
	c.readType("pong")
	duplicate := c.readType("error")
	require.Equal(t, "duplicate_subscription", duplicate.Code)
	require.Equal(t, "s1", duplicate.ID)
	require.Equal(t, "s2", c.readType("subscribed").ID)
	require.Equal(t, "s3", c.readType("subscribed").ID)
	require.Equal(t, "s4", c.readType("unsubscribed").ID)
	unknown := c.readType("error")
	require.Equal(t, "unknown_subscription", unknown.Code)
	require.Equal(t, "none", unknown.ID)
	b.requireAlive(t, c)
}

// An unsubscribe that arrives during the replay of its subscription stops
// the replay: the subscription gets unsubscribed and no subscribed reply,
// and a live subscription of the session misses nothing meanwhile.
func TestReplayStoppedByUnsubscribe(t *testing.T) {
	t.Parallel()
	b := setupReplay(t, 3000, time.Minute)
	c := b.connect(t)
	c.subscribe("projects", []string{"Project"}, nil)

	b.subscribeSince(c, "users", "UserProfile")
	for i := range 10 {
		require.Equal(t, b.ids[i], c.read().ID)
	}
	c.send(map[string]string{"type": "unsubscribe", "id": "users"})
	project := b.event("Project", "data.created", `{}`)
	b.write(t, project)

	var replayed, projects int
	for {
		m := c.read()
		if m.Type == "unsubscribed" {
			require.Equal(t, "users", m.ID)
			break
		}
		require.NotEqual(t, "subscribed", m.Type, "a stopped replay must not go live")
		if m.Model == "Project" {
			projects++
		} else {
			replayed++
		}
	}
	// Only the events already on their way when the unsubscribe arrived,
	// about 90 as with a ping.
	require.Less(t, replayed, 300, "the replay went on after the unsubscribe")
	if projects == 0 {
		require.Equal(t, project.ID, c.readType("create").ID)
	}

	user, later := b.event("UserProfile", "data.created", `{}`), b.event("Project", "data.created", `{}`)
	b.write(t, user, later)
	require.Equal(t, later.ID, c.readType("create").ID, "no event of the unsubscribed subscription")
	c.send(map[string]string{"type": "ping"})
	c.readType("pong")
}

// Hub.Close during a replay stops it and closes the session with 4009.
func TestReplayStoppedByClose(t *testing.T) {
	t.Parallel()
	b := setupReplay(t, 5000, time.Minute)
	c := b.connect(t)
	b.subscribeSince(c, "s1", "UserProfile")
	c.send(map[string]string{"type": "ping"})
	require.Equal(t, b.ids[0], c.read().ID)

	// The client reads on, slowly, so the close frame reaches it behind
	// the messages on their way. A replay that went on would take 5 s.
	closed := make(chan error, 1)
	go func() {
		for {
			time.Sleep(time.Millisecond)
			if _, _, err := c.conn.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	start := time.Now()
	b.stop()
	require.Less(t, time.Since(start), 3*time.Second, "Close waited for the replay")

	var err error
	select {
	case err = <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("the session was not closed")
	}
	var closeErr *websocket.CloseError
	require.ErrorAs(t, err, &closeErr)
	require.Equal(t, 4009, closeErr.Code)
}

// A client that reads a long replay and pings every 50 ms keeps its
// session. Queued pings once filled the session's queue, which stopped
// melody's read loop, so the session ended with 1006 after the pong wait.
func TestReplayWithPingsOutlastsPongWait(t *testing.T) {
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

// A client that sends more messages during a long replay than the session
// queues (MaxSubscriptions+4) is closed with 1008 and a reason. Waiting
// for room instead stopped melody's read loop, so the hub's protocol pongs
// went unread and the connection was reset, without a close frame, once
// the replay outlasted the pong wait.
func TestReplayFloodClosesWithFrame(t *testing.T) {
	t.Parallel()
	b := setupReplay(t, 4500, 2*time.Second)
	c := b.connect(t)
	b.subscribeSince(c, "s1", "UserProfile")
	for range 40 {
		c.send(map[string]string{"type": "bogus"})
	}

	answered := 0
	for answered < 40 {
		require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(waitTimeout)))
		time.Sleep(time.Millisecond)
		_, data, err := c.conn.ReadMessage()
		if err == nil {
			var m message
			require.NoError(t, json.Unmarshal(data, &m))
			if m.Type == "error" {
				answered++
			}
			continue
		}
		var closeErr *websocket.CloseError
		require.True(t, errors.As(err, &closeErr), "session ended without a close frame: %v", err)
		require.Equal(t, websocket.ClosePolicyViolation, closeErr.Code, "close reason %q", closeErr.Text)
		return
	}
}
