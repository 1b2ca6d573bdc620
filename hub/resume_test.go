package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

func TestResumeSinceWhileWriting(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	var ids []string
	for range 4 {
		batch := make([]store.Event, 50)
		for i := range batch {
			batch[i] = b.event("UserProfile", "data.updated", `{"n":1}`)
			ids = append(ids, batch[i].ID)
		}
		b.write(t, batch...)
	}
	c := dial(t, b.url)
	c.authenticate(adminToken)

	// A writer keeps storing events while the subscription replays.
	const more = 200
	written := make(chan string, more)
	writeErr := make(chan error, 1)
	go func() {
		defer close(written)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range more {
			e := b.event("UserProfile", "data.created", `{"n":2}`)
			if err := b.writer.Write(ctx, []store.Event{e}, nil); err != nil {
				writeErr <- err
				return
			}
			written <- e.ID
		}
	}()
	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "since": ids[49]})

	for id := range written {
		ids = append(ids, id)
	}
	require.Empty(t, writeErr)
	var got []string
	var liveFrom string
	for len(got) < len(ids)-50 {
		m := c.read()
		if m.Type == "subscribed" {
			require.NotNil(t, m.LiveFrom)
			liveFrom = *m.LiveFrom
			continue
		}
		require.Contains(t, []string{"create", "update"}, m.Type, "message %s", m.raw)
		if liveFrom != "" {
			require.Greater(t, m.ID, liveFrom, "live event at or before liveFrom")
		}
		got = append(got, m.ID)
	}

	require.Equal(t, ids[50:], got)
	require.NotEmpty(t, liveFrom)
}

// A replay for a new subscription must not repeat events that a live
// subscription of the same session has sent already.
func TestResumeAlongsideLiveSubscription(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("projects", []string{"Project"}, nil)

	p1, u1 := b.event("Project", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`)
	p2, u2 := b.event("Project", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`)
	b.write(t, p1, u1, p2, u2)
	require.Equal(t, p1.ID, c.readType("create").ID)
	require.Equal(t, p2.ID, c.readType("create").ID)

	c.send(map[string]any{"type": "subscribe", "id": "all", "models": []string{"UserProfile", "Project"}, "since": p1.ID})
	require.Equal(t, u1.ID, c.readType("create").ID)
	require.Equal(t, u2.ID, c.readType("create").ID)
	sub := c.readType("subscribed")
	require.Equal(t, u2.ID, *sub.LiveFrom)

	p3, u3 := b.event("Project", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`)
	b.write(t, p3, u3)
	require.Equal(t, p3.ID, c.readType("create").ID)
	require.Equal(t, u3.ID, c.readType("create").ID)
}

func TestResumeFromPrunedID(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	pruned := b.event("UserProfile", "data.created", `{}`)
	stored := b.event("UserProfile", "data.created", `{}`)
	b.write(t, stored)
	c := dial(t, b.url)
	c.authenticate(adminToken)

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "since": pruned.ID})

	require.Equal(t, stored.ID, c.readType("create").ID)
	require.Equal(t, stored.ID, *c.readType("subscribed").LiveFrom)
}
