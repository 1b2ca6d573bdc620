package hub_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

// resync is a resync_required message.
type resync struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	Reason     string `json:"reason"`
	Since      string `json:"since"`
	ResumeFrom string `json:"resumeFrom"`
	Message    string `json:"message"`
}

func (c *wsClient) readResync() resync {
	c.t.Helper()
	m := c.readType("resync_required")
	var r resync
	require.NoError(c.t, json.Unmarshal(m.raw, &r))
	return r
}

// prune deletes the stored events committed before the commit time of e,
// as the service does past retention.
func (b *testBundle) prune(t *testing.T, e store.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := b.writer.Prune(ctx, e.CommitTime, 1000)
	require.NoError(t, err)
}

// loseSlot records a resolved slot loss whose boundary is lost's id, as
// though the change behind lost had been committed while the slot was
// missing.
func (b *testBundle) loseSlot(t *testing.T, lost store.Event) store.Gap {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	gap, err := b.writer.AcceptSlotLoss(ctx, "slot", "dropped", 100)
	require.NoError(t, err)
	require.NoError(t, b.writer.ResolveGap(ctx, gap.ID, "slot", 200, lost.ID))
	return gap
}

func TestSubscribeSincePrunedGetsResync(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	e1, e2 := b.event("UserProfile", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`)
	e3, e4 := b.event("UserProfile", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`)
	b.write(t, e1, e2, e3, e4)
	b.prune(t, e3) // deletes e1 and e2
	c := dial(t, b.url)
	c.authenticate(adminToken)

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "since": e1.ID})

	r := c.readResync()
	require.Equal(t, "s1", r.ID)
	require.Equal(t, "events_pruned", r.Reason)
	require.Equal(t, e1.ID, r.Since)
	require.Equal(t, e2.ID, r.ResumeFrom)
	require.Equal(t, "events after "+e1.ID+" may be missing because the events up to "+e2.ID+
		" were deleted past the retention period; reload your state, because the replay starts after "+e2.ID, r.Message)
	require.Equal(t, e3.ID, c.readType("create").ID)
	require.Equal(t, e4.ID, c.readType("create").ID)
	require.Equal(t, e4.ID, *c.readType("subscribed").LiveFrom)
}

func TestSubscribeSinceHorizonResumesQuietly(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	e1, e2, e3 := b.event("UserProfile", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`)
	b.write(t, e1, e2, e3)
	b.prune(t, e2) // deletes e1
	c := dial(t, b.url)
	c.authenticate(adminToken)

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}, "since": e1.ID})

	// The client saw e1, the only pruned event, so it missed nothing.
	require.Equal(t, e2.ID, c.readType("create").ID)
	require.Equal(t, e3.ID, c.readType("create").ID)
	require.Equal(t, e3.ID, *c.readType("subscribed").LiveFrom)
}

func TestSubscribeSinceBeforeSlotGap(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	before, lost, after := b.event("Project", "data.created", `{}`), b.event("Project", "data.created", `{}`), b.event("Project", "data.created", `{}`)
	b.write(t, before)
	b.loseSlot(t, lost)
	b.write(t, after)
	c := dial(t, b.url)
	c.authenticate(adminToken)

	c.send(map[string]any{"type": "subscribe", "id": "p", "models": []string{"Project"}, "since": before.ID})

	r := c.readResync()
	require.Equal(t, "p", r.ID)
	require.Equal(t, "slot_lost", r.Reason)
	require.Equal(t, lost.ID, r.ResumeFrom)
	require.Contains(t, r.Message, "the replication slot was lost, so changes committed between LSN 0/64 and 0/C8 were not captured")
	require.Equal(t, after.ID, c.readType("create").ID)
	require.Equal(t, after.ID, *c.readType("subscribed").LiveFrom)

	// Resuming after resumeFrom is quiet.
	resumed := dial(t, b.url)
	resumed.authenticate(adminToken)
	resumed.send(map[string]any{"type": "subscribe", "id": "q", "models": []string{"Project"}, "since": r.ResumeFrom})
	require.Equal(t, after.ID, resumed.readType("create").ID)
	require.Equal(t, "q", resumed.readType("subscribed").ID)
}

func TestLiveSessionGetsSlotGapResync(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("p", []string{"Project"}, nil)
	c.subscribe("u", []string{"UserProfile"}, nil)
	before := b.event("Project", "data.created", `{}`)
	b.write(t, before)
	require.Equal(t, before.ID, c.readType("create").ID)

	lost, after := b.event("Project", "data.created", `{}`), b.event("UserProfile", "data.created", `{}`)
	b.loseSlot(t, lost)
	b.write(t, after)

	r := c.readResync()
	require.Empty(t, r.ID, "a gap in the live stream concerns every subscription")
	require.Empty(t, r.Since)
	require.Equal(t, "slot_lost", r.Reason)
	require.Equal(t, lost.ID, r.ResumeFrom)
	require.Equal(t, after.ID, c.readType("create").ID)

	// The gap is reported once.
	next := b.event("Project", "data.created", `{}`)
	b.write(t, next)
	require.Equal(t, next.ID, c.readType("create").ID)
}

func TestSubscriptionAfterGapGetsNoResync(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	// The watcher's messages show when the hub has passed the gap, so that
	// a new subscription starts after it.
	watcher := dial(t, b.url)
	watcher.authenticate(adminToken)
	watcher.subscribe("w", []string{"UserProfile"}, nil)
	before, lost, after := b.event("Project", "data.created", `{}`), b.event("Project", "data.created", `{}`), b.event("Project", "data.created", `{}`)
	b.write(t, before)
	b.loseSlot(t, lost)
	b.write(t, after)
	marker := b.event("UserProfile", "data.created", `{}`)
	b.write(t, marker)
	require.Equal(t, lost.ID, watcher.readResync().ResumeFrom)
	require.Equal(t, marker.ID, watcher.readType("create").ID)

	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("p", []string{"Project"}, nil)
	next := b.event("Project", "data.created", `{}`)
	b.write(t, next)

	require.Equal(t, next.ID, c.readType("create").ID, "no resync_required before the event")
}
