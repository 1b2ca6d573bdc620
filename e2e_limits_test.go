package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// getEvents sends GET /events with a bearer token and returns the response
// with its body read.
func getEvents(t *testing.T, addr, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// Wrong bearer tokens use up the address's attempts for the REST API and
// the WebSocket hub alike, with the service's default limits: 10 in a row.
func TestServiceLimitsFailedAuthentication(t *testing.T) {
	t.Parallel()
	url, _ := newDatabase(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	svc := startReady(t, url)
	for i := range 10 {
		resp, body := getEvents(t, svc.addr, fmt.Sprintf("guess-%02d-0123456789", i))
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
	}

	resp, body := getEvents(t, svc.addr, "test-token-0123456789")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, body)
	require.Contains(t, body, `"code":"too_many_attempts"`)
	retryAfter, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.Positive(t, retryAfter)

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+svc.addr+"/v1/realtime", nil)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	require.NoError(t, conn.WriteJSON(map[string]any{"type": "authenticate", "token": "test-token-0123456789"}))
	var msg map[string]any
	require.NoError(t, conn.ReadJSON(&msg))
	require.Equal(t, "too_many_attempts", msg["code"], msg)
	_, _, err = conn.ReadMessage()
	var closeErr *websocket.CloseError
	require.True(t, errors.As(err, &closeErr), "expected a close frame, got %v", err)
	require.Equal(t, 4029, closeErr.Code)
}
