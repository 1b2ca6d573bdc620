package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/store"
)

// setupGaps is setupWebhooks in development mode with GET /events on the
// same real store.
func setupGaps(t *testing.T) *webhookBundle {
	t.Helper()
	var events storeEvents
	opts := devOptions()
	opts.Events = &events
	bundle := setupWebhooks(t, opts)
	events.Store = bundle.store
	return bundle
}

// storeEvents lets setupGaps hand the API an EventSource before the store
// it reads exists; requests come only after Store is set.
type storeEvents struct{ *store.Store }

var _ httpapi.EventSource = (*storeEvents)(nil)

// resyncError is the error member of a 410 resync_required response.
type resyncError struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field"`
	Reason     string `json:"reason"`
	ResumeFrom string `json:"resumeFrom"`
}

func requireResync(t *testing.T, resp response) resyncError {
	t.Helper()
	require.Equal(t, http.StatusGone, resp.status, "body: %s", resp.body)
	require.Equal(t, "application/json", resp.header.Get("Content-Type"))
	var envelope struct {
		Error resyncError `json:"error"`
	}
	require.NoError(t, json.Unmarshal(resp.body, &envelope), "body: %s", resp.body)
	require.Equal(t, "resync_required", envelope.Error.Code)
	return envelope.Error
}

// loseSlot records a resolved slot loss whose boundary is lost's id.
func (b *webhookBundle) loseSlot(t *testing.T, lost store.Event) {
	t.Helper()
	gap, err := b.store.AcceptSlotLoss(t.Context(), "slot", "dropped", 100)
	require.NoError(t, err)
	require.NoError(t, b.store.ResolveGap(t.Context(), gap.ID, "slot", 200, lost.ID))
}

func TestEventsAfterPrunedCursor(t *testing.T) {
	t.Parallel()
	bundle := setupGaps(t)
	old := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	events := []store.Event{userEvent(1, "data.created", old), userEvent(2, "data.created", old),
		userEvent(3, "data.created", time.Now()), userEvent(4, "data.created", time.Now())}
	require.NoError(t, bundle.store.Write(t.Context(), events, nil))
	_, err := bundle.store.Prune(t.Context(), time.Now().Add(-time.Hour), 100)
	require.NoError(t, err)

	resync := requireResync(t, bundle.get(t, "/events?after="+events[0].ID))

	require.Equal(t, "after", resync.Field)
	require.Equal(t, "events_pruned", resync.Reason)
	require.Equal(t, events[1].ID, resync.ResumeFrom)
	require.Equal(t, "events after "+events[0].ID+" may be missing because the events up to "+events[1].ID+
		" were deleted past the retention period; reload your state and continue with after="+events[1].ID, resync.Message)
	page := decodePage(t, bundle.get(t, "/events?after="+resync.ResumeFrom))
	require.Len(t, page.Events, 2, "reading on after resumeFrom is complete")
	require.Equal(t, events[3].ID, page.Next)
	require.False(t, page.HasMore)
	fresh := decodePage(t, bundle.get(t, "/events"))
	require.Len(t, fresh.Events, 2, "a reader without a cursor starts at the oldest stored event")
}

func TestEventsAcrossSlotGap(t *testing.T) {
	t.Parallel()
	bundle := setupGaps(t)
	now := time.Now()
	before, lost, after := userEvent(1, "data.created", now), userEvent(2, "data.created", now), userEvent(3, "data.created", now)
	require.NoError(t, bundle.store.Write(t.Context(), []store.Event{before}, nil))
	bundle.loseSlot(t, lost)
	require.NoError(t, bundle.store.Write(t.Context(), []store.Event{after}, nil))

	// Without a cursor, the first page ends before the gap.
	first := decodePage(t, bundle.get(t, "/events?limit=10"))
	require.Len(t, first.Events, 1)
	require.Equal(t, before.ID, first.Next)
	require.True(t, first.HasMore)
	resync := requireResync(t, bundle.get(t, "/events?after="+first.Next))
	require.Equal(t, "slot_lost", resync.Reason)
	require.Equal(t, lost.ID, resync.ResumeFrom)
	require.Contains(t, resync.Message, "the replication slot was lost, so changes committed between LSN 0/64 and 0/C8 were not captured")
	second := decodePage(t, bundle.get(t, "/events?after="+resync.ResumeFrom))
	require.Len(t, second.Events, 1)
	require.Equal(t, after.ID, second.Next)
	require.False(t, second.HasMore)
}

func TestWebhookReplayAcrossGap(t *testing.T) {
	t.Parallel()
	bundle := setupGaps(t)
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	before, lost, after := userEvent(1, "data.created", base), userEvent(2, "data.created", base), userEvent(3, "data.created", base)
	require.NoError(t, bundle.store.Write(t.Context(), []store.Event{before}, nil))
	bundle.loseSlot(t, lost)
	require.NoError(t, bundle.store.Write(t.Context(), []store.Event{after}, nil))
	hook := bundle.createDev(t, "User.*")
	path := "/webhooks/" + hook.ID + "/replay"

	t.Run("AfterCursorBeforeGap", func(t *testing.T) {
		resync := requireResync(t, bundle.send(t, http.MethodPost, path, `{"after":"`+before.ID+`"}`))

		require.Equal(t, "after", resync.Field)
		require.Equal(t, lost.ID, resync.ResumeFrom)
		require.Contains(t, resync.Message, "; replay with after="+lost.ID)
	})

	t.Run("SinceBeforeGap", func(t *testing.T) {
		resync := requireResync(t, bundle.send(t, http.MethodPost, path, `{"since":"`+base.Format(time.RFC3339)+`"}`))

		require.Equal(t, "since", resync.Field)
		require.Equal(t, "slot_lost", resync.Reason)
		require.Contains(t, resync.Message, "events committed from "+base.Format(time.RFC3339)+" on may be missing")
	})

	t.Run("AfterResumeFrom", func(t *testing.T) {
		resp := bundle.send(t, http.MethodPost, path, `{"after":"`+lost.ID+`"}`)

		var replayed struct {
			Queued int64 `json:"queued"`
		}
		decodeStrict(t, resp, http.StatusAccepted, &replayed)
		require.Equal(t, int64(1), replayed.Queued)
	})
}
