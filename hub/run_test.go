package hub_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

func TestTwoHubsDeliverSameEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	_, secondURL, _ := startHub(t, b.dbURL, testConfig())
	first, second := dial(t, b.url), dial(t, secondURL)
	for _, c := range []*wsClient{first, second} {
		c.authenticate(adminToken)
		c.subscribe("s1", []string{"UserProfile", "Project"}, nil)
	}

	var ids []string
	for range 10 {
		batch := []store.Event{
			b.event("UserProfile", "data.created", `{}`),
			b.event("Project", "data.updated", `{}`),
			b.event("UserProfile", "data.deleted", `{}`),
		}
		for _, e := range batch {
			ids = append(ids, e.ID)
		}
		b.write(t, batch...)
	}

	for _, c := range []*wsClient{first, second} {
		var got []string
		for range ids {
			got = append(got, c.read().ID)
		}
		require.Equal(t, ids, got)
	}
}

func TestShutdownClosesWith4009(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("s1", []string{"UserProfile"}, nil)
	idle := dial(t, b.url)

	b.stop()

	for _, client := range []*wsClient{c, idle} {
		closeErr, _ := client.readClose()
		require.Equal(t, 4009, closeErr.Code)
		require.Contains(t, closeErr.Text, "reconnect")
	}
	_, resp, err := websocket.DefaultDialer.DialContext(context.Background(), b.url+"/v1/realtime", nil)
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	b.hub.Close()
}
