package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
)

func TestRealtimeReceivesCommittedRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx, `CREATE TABLE user_profiles (id text PRIMARY KEY, interests text[])`)
	require.NoError(t, err)
	svc := startService(t, url)
	waitUntil(t, 30*time.Second, "service ready", func() bool { return httpOK(svc.addr + "/readyz") })

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
	svc := startService(t, url)
	waitUntil(t, 30*time.Second, "service ready", func() bool { return httpOK(svc.addr + "/readyz") })
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
