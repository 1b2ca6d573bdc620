package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
)

func TestRealtimeReceivesCommittedRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE user_profiles (id text PRIMARY KEY, interests text[])`)
	svc := startReady(t, url)

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+svc.addr+"/v1/realtime", nil)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	require.NoError(t, conn.WriteJSON(map[string]any{"type": "authenticate", "token": "test-token-0123456789"}))
	var msg map[string]any
	require.NoError(t, conn.ReadJSON(&msg))
	require.Equal(t, "authenticated", msg["type"])
	require.NoError(t, conn.WriteJSON(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "events": []string{"created", "update"}}))
	require.NoError(t, conn.ReadJSON(&msg))
	require.Equal(t, "subscribed", msg["type"], msg)

	_, err = pool.Exec(ctx, `INSERT INTO user_profiles VALUES ('profile_123', '{hiking}')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE user_profiles SET interests = '{hiking,photography}'`)
	require.NoError(t, err)
	var created, updated map[string]any
	require.NoError(t, conn.ReadJSON(&created))
	require.NoError(t, conn.ReadJSON(&updated))

	require.Equal(t, "create", created["type"])
	require.Equal(t, "profile_123", created["instanceId"])
	require.Equal(t, "update", updated["type"])
	require.Equal(t, map[string]any{"interests": []any{"hiking", "photography"}}, updated["changes"])
	require.Equal(t, map[string]any{"interests": []any{"hiking"}}, updated["old"])
	require.Less(t, created["id"].(string), updated["id"].(string))
}

func TestServiceStopsCleanlyOnSIGTERM(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	svc := startReady(t, url)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+svc.addr+"/v1/realtime", nil)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.WriteJSON(map[string]any{"type": "authenticate", "token": "test-token-0123456789"}))
	var msg map[string]any
	require.NoError(t, conn.ReadJSON(&msg))

	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(15*time.Second)))
	_, _, readErr := conn.ReadMessage()
	exitErr := svc.waitExit(t, 20*time.Second)

	var closeErr *websocket.CloseError
	require.ErrorAs(t, readErr, &closeErr)
	require.Equal(t, 4009, closeErr.Code, "sessions are told the server is restarting")
	require.NoError(t, exitErr, "SIGTERM is a clean exit")
	require.Contains(t, svc.output.String(), "replication stopped")
	require.Contains(t, svc.output.String(), "shutdown complete")
}

// wsClient is an authenticated realtime session subscribed to one model.
type wsClient struct {
	conn     *websocket.Conn
	liveFrom string
}

func dialRealtime(t *testing.T, addr, model, since string) *wsClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/realtime", nil)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(60*time.Second)))
	require.NoError(t, conn.WriteJSON(map[string]any{"type": "authenticate", "token": "test-token-0123456789"}))
	var msg map[string]any
	require.NoError(t, conn.ReadJSON(&msg))
	require.Equal(t, "authenticated", msg["type"])
	sub := map[string]any{"type": "subscribe", "id": "s1", "models": []string{model}}
	if since != "" {
		sub["since"] = since
	}
	require.NoError(t, conn.WriteJSON(sub))
	return &wsClient{conn: conn}
}

// waitSubscribed reads until the subscribed reply and notes its liveFrom.
func (c *wsClient) waitSubscribed(t *testing.T) {
	t.Helper()
	for {
		var msg map[string]any
		require.NoError(t, c.conn.ReadJSON(&msg))
		require.NotEqual(t, "error", msg["type"], "error message: %v", msg)
		if msg["type"] == "subscribed" {
			c.liveFrom, _ = msg["liveFrom"].(string)
			return
		}
	}
}

// read returns the next n event messages, skipping the subscribed reply
// but noting its liveFrom.
func (c *wsClient) read(t *testing.T, n int) []map[string]any {
	t.Helper()
	var out []map[string]any
	for len(out) < n {
		var msg map[string]any
		require.NoError(t, c.conn.ReadJSON(&msg))
		switch msg["type"] {
		case "subscribed":
			if live, ok := msg["liveFrom"].(string); ok {
				c.liveFrom = live
			}
		case "error":
			t.Fatalf("error message: %v", msg)
		default:
			out = append(out, msg)
		}
	}
	return out
}

func TestRealtimeResumeLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE counters (id int PRIMARY KEY, n int)`)
	svc := startReady(t, url)

	first := dialRealtime(t, svc.addr, "Counter", "")
	first.waitSubscribed(t)
	_, err := pool.Exec(ctx, `INSERT INTO counters VALUES (0, 0)`)
	require.NoError(t, err)
	last := first.read(t, 1)[0]["id"].(string)
	first.conn.Close()

	// 1,000 changes while disconnected, and writes keep running after.
	_, err = pool.Exec(ctx, `INSERT INTO counters SELECT g, g FROM generate_series(1, 1000) g`)
	require.NoError(t, err)
	writes := make(chan error, 1)
	go func() {
		for i := 1001; i <= 1200; i++ {
			if _, err := pool.Exec(ctx, `INSERT INTO counters VALUES ($1, $1)`, i); err != nil {
				writes <- err
				return
			}
		}
		writes <- nil
	}()
	resumed := dialRealtime(t, svc.addr, "Counter", last)
	events := resumed.read(t, 1200)
	require.NoError(t, <-writes)

	for i, e := range events {
		require.Equal(t, fmt.Sprint(i+1), e["instanceId"], "event %d arrives once and in order", i)
	}
	require.NotEmpty(t, resumed.liveFrom)
}

func TestRealtimeSameEventsOnTwoInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE counters (id int PRIMARY KEY, n int)`)
	a := startReady(t, url)
	// The second instance cannot read the slot while the first holds it,
	// but its hub follows the shared event store.
	b := startService(t, url)
	waitUntil(t, 30*time.Second, "second instance up", func() bool { return httpOK(b.addr + "/healthz") })

	onA := dialRealtime(t, a.addr, "Counter", "")
	onB := dialRealtime(t, b.addr, "Counter", "")
	// Rows committed before a subscription is live are not sent to it.
	onA.waitSubscribed(t)
	onB.waitSubscribed(t)
	for i := range 300 {
		_, err := pool.Exec(ctx, `INSERT INTO counters VALUES ($1, 0)`, i)
		require.NoError(t, err)
	}
	fromA, fromB := onA.read(t, 300), onB.read(t, 300)

	for i := range 300 {
		require.Equal(t, fromA[i]["id"], fromB[i]["id"], "event %d", i)
		require.Equal(t, fmt.Sprint(i), fromB[i]["instanceId"])
	}
}
