package hub_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

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
