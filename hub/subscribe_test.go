package hub_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEventsArriveInCommitOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	sub := c.subscribe("s1", []string{"UserProfile"}, nil)
	require.Nil(t, sub.LiveFrom, "liveFrom of an empty store")

	// Bytes that encoding/json would rewrite: <, &, U+2028 and a large
	// exponent, so a re-encoding would show.
	changes := `{"name":"<b>&amp;</b>","note":"line` + "\u2028" + `sep","n":1e+21,"tags":["a","b"]}`
	events := []struct{ name, wantType string }{
		{"data.created", "create"},
		{"data.updated", "update"},
		{"data.deleted", "delete"},
		{"data.truncated", "truncate"},
	}
	var ids []string
	for _, e := range events {
		ev := b.event("UserProfile", e.name, changes)
		ids = append(ids, ev.ID)
		b.write(t, b.event("Project", "data.created", `{}`), ev)
	}

	for i, e := range events {
		m := c.readType(e.wantType)
		require.Equal(t, ids[i], m.ID)
		require.Equal(t, e.name, m.Event)
		require.Equal(t, "UserProfile", m.Model)
		require.Equal(t, changes, string(m.Changes))
		if e.name == "data.updated" {
			require.JSONEq(t, `{"name":"before"}`, string(m.Old))
		} else {
			require.Nil(t, m.Old)
		}
		require.Contains(t, string(m.raw), `"timestamp":`)
		require.Contains(t, string(m.raw), `"lsn":"0/`)
	}
}

func TestSemanticEventArrivesAsEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	sub := c.subscribe("s1", []string{"UserProfile"}, []string{"user.created"})
	require.Equal(t, []string{"user.created"}, sub.Events)

	b.write(t, b.event("UserProfile", "data.created", `{"n":1}`), b.event("UserProfile", "user.created", `{"n":1}`))
	m := c.readType("event")

	require.Equal(t, "user.created", m.Event)
	require.Equal(t, `{"n":1}`, string(m.Changes))
}

func TestSubscribeNormalizesEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)

	sub := c.subscribe("s1", []string{"UserProfile", "UserProfile"}, []string{"updated", "delete", "deleted", "create"})

	require.Equal(t, []string{"UserProfile"}, sub.Models)
	require.Equal(t, []string{"updated", "deleted", "created"}, sub.Events)
	all := c.subscribe("s2", []string{"Project"}, nil)
	require.Equal(t, []string{}, all.Events)
}

func TestSubscribeRejectsInvalidRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	tests := []struct {
		name        string
		request     map[string]any
		wantCode    string
		wantMessage string
	}{
		{"UnknownModel", map[string]any{"id": "s1", "models": []string{"UserProfile", "Nope"}}, "unknown_model", `"Nope"`},
		{"UnknownEvent", map[string]any{"id": "s1", "models": []string{"UserProfile"}, "events": []string{"updated", "exploded"}}, "unknown_event", `"exploded"`},
		{"MissingID", map[string]any{"models": []string{"UserProfile"}}, "invalid_subscription", "id"},
		{"NoModels", map[string]any{"id": "s1", "models": []string{}}, "invalid_subscription", "models"},
		{"MalformedSince", map[string]any{"id": "s1", "models": []string{"UserProfile"}, "since": "evt_xyz"}, "invalid_since", `"evt_xyz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, b.url)
			c.authenticate(adminToken)
			tt.request["type"] = "subscribe"

			c.send(tt.request)
			m := c.readType("error")

			require.Equal(t, tt.wantCode, m.Code)
			require.Contains(t, m.Message, tt.wantMessage)
			c.subscribe("ok", []string{"UserProfile"}, nil)
		})
	}
}

func TestOverlappingSubscriptionsSendOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("all", []string{"UserProfile"}, nil)
	c.subscribe("created", []string{"UserProfile", "Project"}, []string{"created"})

	first, second := b.event("UserProfile", "data.created", `{}`), b.event("Project", "data.created", `{}`)
	b.write(t, first, second)

	require.Equal(t, first.ID, c.readType("create").ID)
	require.Equal(t, second.ID, c.readType("create").ID)
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("profiles", []string{"UserProfile"}, nil)
	c.subscribe("projects", []string{"Project"}, nil)

	c.send(map[string]string{"type": "unsubscribe", "id": "profiles"})
	require.Equal(t, "profiles", c.readType("unsubscribed").ID)
	c.send(map[string]string{"type": "unsubscribe", "id": "profiles"})
	require.Equal(t, "unknown_subscription", c.readType("error").Code)

	project := b.event("Project", "data.created", `{}`)
	b.write(t, b.event("UserProfile", "data.created", `{}`), project)
	require.Equal(t, project.ID, c.readType("create").ID)
}

func TestTooManySubscriptions(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxSubscriptions = 2
	b := setup(t, cfg)
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("s1", []string{"UserProfile"}, nil)
	c.subscribe("s2", []string{"Project"}, nil)

	c.send(map[string]any{"type": "subscribe", "id": "s2", "models": []string{"Project"}})
	require.Equal(t, "duplicate_subscription", c.readType("error").Code)
	c.send(map[string]any{"type": "subscribe", "id": "s3", "models": []string{"Project"}})
	closeErr, msgs := c.readClose()

	require.Equal(t, 4010, closeErr.Code)
	require.Len(t, msgs, 1)
	require.Equal(t, "too_many_subscriptions", msgs[0].Code)
}
