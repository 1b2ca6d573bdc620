package hub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// TestSubscribeSinceAheadOfStore covers a since from another database, such
// as a browser tab that outlived a recreated one: the subscribe is rejected
// and the session's other subscriptions keep receiving events.
func TestSubscribeSinceAheadOfStore(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("live", []string{"Project"}, nil)
	first := b.event("Project", "data.created", `{"n":1}`)
	b.write(t, first)
	require.Equal(t, first.ID, c.readType("create").ID)

	const ahead = "evt_ffffffffffffffffffffffffff"
	c.send(map[string]any{"type": "subscribe", "id": "ahead", "models": []string{"UserProfile"}, "since": ahead})
	reply := c.readType("error")
	require.Equal(t, "invalid_since", reply.Code)
	require.Equal(t, "ahead", reply.ID)
	require.Contains(t, reply.Message, ahead)

	second := b.event("Project", "data.created", `{"n":2}`)
	b.write(t, second)
	require.Equal(t, second.ID, c.readType("create").ID)
}

// TestFilterClaimFailsClosed rejects filter claims that would narrow
// nothing, rather than letting their holder see every row of the model.
func TestFilterClaimFailsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	claims := map[string]jwt.MapClaims{
		"EmptyColumns": {"filter": map[string]any{"Project": map[string]any{}}},
		"NullColumns":  {"filter": map[string]any{"Project": nil}},
		"UnknownModel": {"filter": map[string]any{"project": map[string]any{"owner_id": 1}}},
	}
	for name, claim := range claims {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, b.url)
			c.send(map[string]string{"type": "authenticate", "token": signHS256(t, jwtSecret, claim)})
			m := c.read()
			require.Equal(t, "invalid_token", m.Code, "reply %s", m.raw)
			require.Contains(t, m.Message, "filter claim")
		})
	}
}

// TestErrorReplyEchoIsBounded keeps error replies small whatever the client
// sent, so a client that never reads cannot make the server hold megabytes
// of replies.
func TestErrorReplyEchoIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)

	c.sendFrame(websocket.TextMessage, []byte(`{"type":"`+strings.Repeat("\u00e9", 30000)+`"}`))
	m := c.readType("error")
	require.Equal(t, "unknown_type", m.Code)
	require.Less(t, len(m.raw), 2048, "reply to a 60 KB type")

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{strings.Repeat("M", 60000)}})
	m = c.readType("error")
	require.Equal(t, "unknown_model", m.Code)
	require.Less(t, len(m.raw), 2048, "reply to a 60 KB model name")

	c.send(map[string]any{"type": "subscribe", "id": strings.Repeat("i", 60000), "models": []string{"Project"}})
	m = c.readType("error")
	require.Equal(t, "invalid_subscription", m.Code)
	require.Less(t, len(m.raw), 2048, "reply to a 60 KB subscription id")

	c.send(map[string]any{"type": "unsubscribe", "id": strings.Repeat("i", 60000)})
	m = c.readType("error")
	require.Equal(t, "unknown_subscription", m.Code)
	require.Less(t, len(m.raw), 2048, "reply to a 60 KB unsubscribe id")
}

// TestFilterClaimHidesPreviousOwnersValues hands a row from owner 1 to
// owner 2: owner 2's session gets the update without old, live and in a
// replay, while an unfiltered session still gets old.
func TestFilterClaimHidesPreviousOwnersValues(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	admin := dial(t, b.url)
	admin.authenticate(adminToken)
	admin.subscribe("s1", []string{"UserProfile"}, nil)
	owner2 := dial(t, b.url)
	owner2.authenticate(ownerToken(t, 2))
	owner2.subscribe("s1", []string{"UserProfile"}, nil)

	before := b.event("UserProfile", "data.created", `{"owner_id":2}`)
	moved := b.event("UserProfile", "data.updated", `{"owner_id":2,"note":null}`)
	moved.Payload = []byte(strings.Replace(string(moved.Payload), `"old":{"name":"before"}`,
		`"old":{"owner_id":1,"note":"owner 1's private note"}`, 1))
	b.write(t, before, moved)

	require.Equal(t, before.ID, owner2.readType("create").ID)
	live := owner2.readType("update")
	require.Equal(t, moved.ID, live.ID)
	require.Empty(t, live.Old, "update %s", live.raw)
	require.NotContains(t, string(live.raw), "owner 1's private note")

	admin.readType("create")
	require.JSONEq(t, `{"owner_id":1,"note":"owner 1's private note"}`, string(admin.readType("update").Old))

	replayed := dial(t, b.url)
	replayed.authenticate(ownerToken(t, 2))
	replayed.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "since": before.ID})
	m := replayed.readType("update")
	require.Equal(t, moved.ID, m.ID)
	require.NotContains(t, string(m.raw), "owner 1's private note")
}

// TestFanOutWhileSessionsDisconnect writes events while many clients drop
// their connections, so fan-out writes to sessions that melody has closed
// but whose handlers have not returned. melody reports those writes through
// the error handler from inside the write; the hub must keep serving, and
// Close must still return.
func TestFanOutWhileSessionsDisconnect(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	clients := make([]*wsClient, 500)
	for i := range clients {
		clients[i] = dial(t, b.url)
		clients[i].authenticate(adminToken)
		clients[i].subscribe("s1", []string{"Project"}, nil)
	}
	for round := range 20 {
		for _, c := range clients[round*15 : (round+1)*15] {
			_ = c.conn.Close()
		}
		b.write(t, b.event("Project", "data.created", `{}`), b.event("Project", "data.created", `{}`))
	}

	fresh := dial(t, b.url)
	fresh.authenticate(adminToken)
	fresh.subscribe("s1", []string{"Project"}, nil)
	last := b.event("Project", "data.created", `{}`)
	b.write(t, last)
	// fresh may first get events written before it subscribed that the
	// hub had not fanned out yet.
	for got := fresh.readType("create").ID; got != last.ID; got = fresh.readType("create").ID {
		require.Less(t, got, last.ID, "the hub stopped serving")
	}

	// Close the hub while the other 200 sessions are being torn down.
	for _, c := range clients[300:] {
		_ = c.conn.Close()
	}
	closed := make(chan struct{})
	go func() {
		b.hub.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Hub.Close did not return within 30s")
	}
}
