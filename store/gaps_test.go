package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

func TestPruneRecordsHorizon(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	// Commit times out of id order: event 3 is older than event 2, so the
	// horizon is the greatest deleted id, not the last one by time.
	require.NoError(t, st.Write(ctx, []store.Event{event(1, old), event(2, old.Add(2*time.Second)),
		event(3, old.Add(time.Second)), event(4, time.Now())}, nil))

	deleted, err := st.Prune(ctx, old.Add(1500*time.Millisecond), 1)

	require.NoError(t, err)
	require.EqualValues(t, 2, deleted)
	gaps, err := st.GapsAfter(ctx, event(1, old).ID)
	require.NoError(t, err)
	require.Len(t, gaps, 1)
	require.Equal(t, store.GapEventsPruned, gaps[0].Reason)
	require.Equal(t, event(3, old).ID, gaps[0].ResumeFrom)
	require.True(t, gaps[0].At.Equal(old.Add(time.Second)), "At is %s", gaps[0].At)
	none, err := st.GapsAfter(ctx, event(3, old).ID)
	require.NoError(t, err)
	require.Empty(t, none, "a cursor at the horizon has missed nothing")

	since, err := st.GapSince(ctx, old.Add(time.Second))
	require.NoError(t, err)
	require.NotNil(t, since, "a replay from the newest pruned commit time misses that event")
	since, err = st.GapSince(ctx, old.Add(1500*time.Millisecond))
	require.NoError(t, err)
	require.Nil(t, since)
}

func TestPruneNeverLowersHorizon(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	require.NoError(t, st.Write(ctx, []store.Event{event(5, old)}, nil))
	_, err := st.Prune(ctx, time.Now().Add(-time.Hour), 100)
	require.NoError(t, err)
	// An older event stored late, such as one replayed after a crash.
	require.NoError(t, st.Write(ctx, []store.Event{event(2, old)}, nil))
	_, err = st.Prune(ctx, time.Now().Add(-time.Hour), 100)
	require.NoError(t, err)

	gap, err := st.GapAfter(ctx, "")
	require.NoError(t, err)
	require.Equal(t, event(5, old).ID, gap.ResumeFrom)
}

func TestSlotGapLifecycle(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	require.NoError(t, st.Write(ctx, []store.Event{event(1, time.Now())}, &store.Checkpoint{Slot: "s", LSN: 100}))

	pending, err := st.AcceptSlotLoss(ctx, "s", "dropped", 100)
	require.NoError(t, err)
	again, err := st.AcceptSlotLoss(ctx, "s", "invalidated (wal_status lost)", 100)
	require.NoError(t, err)
	require.Equal(t, pending, again, "a second accept returns the pending gap")
	require.Equal(t, event(1, time.Now()).ID, pending.LastID)
	listed, err := st.GapsAfter(ctx, "")
	require.NoError(t, err)
	require.Empty(t, listed, "a pending gap has no events after it yet")

	require.NoError(t, st.ResolveGap(ctx, pending.ID, "s", 500, event(3, time.Now()).ID))

	gap, err := st.GapAfter(ctx, event(1, time.Now()).ID)
	require.NoError(t, err)
	require.NotNil(t, gap)
	require.Equal(t, store.GapSlotLost, gap.Reason)
	require.Equal(t, event(3, time.Now()).ID, gap.ResumeFrom)
	require.Equal(t, pglogrepl.LSN(100), gap.LostAfter)
	require.Equal(t, pglogrepl.LSN(500), gap.ResumeLSN)
	require.Equal(t, "dropped", gap.Detail)
	checkpoint, err := st.Checkpoint(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, pglogrepl.LSN(500), checkpoint)
	acked, err := st.Acknowledged(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, pglogrepl.LSN(500), acked, "the new slot starts acknowledged at its consistent point")
	since, err := st.GapSince(ctx, time.Now().Add(-time.Minute))
	require.NoError(t, err)
	require.Equal(t, gap.ID, since.ID)
	require.Error(t, st.ResolveGap(ctx, pending.ID, "s", 600, event(4, time.Now()).ID), "a resolved gap stays as it is")
}

func TestGapAfterReturnsNewest(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	require.NoError(t, st.Write(ctx, []store.Event{event(1, old), event(2, old), event(9, time.Now())}, nil))
	pending, err := st.AcceptSlotLoss(ctx, "s", "dropped", 100)
	require.NoError(t, err)
	require.NoError(t, st.ResolveGap(ctx, pending.ID, "s", 500, event(5, old).ID))
	_, err = st.Prune(ctx, time.Now().Add(-time.Hour), 100)
	require.NoError(t, err)

	gaps, err := st.GapsAfter(ctx, event(1, old).ID)
	require.NoError(t, err)
	newest, err := st.GapAfter(ctx, event(1, old).ID)
	require.NoError(t, err)

	require.Len(t, gaps, 2)
	require.Equal(t, []string{event(2, old).ID, event(5, old).ID}, []string{gaps[0].ResumeFrom, gaps[1].ResumeFrom})
	require.Equal(t, gaps[1], *newest)
}

func TestListWithGaps(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	require.NoError(t, st.Write(ctx, []store.Event{event(1, time.Now()), event(3, time.Now())}, nil))
	pending, err := st.AcceptSlotLoss(ctx, "s", "dropped", 100)
	require.NoError(t, err)
	require.NoError(t, st.ResolveGap(ctx, pending.ID, "s", 500, event(2, time.Now()).ID))

	events, gaps, err := st.ListWithGaps(ctx, "", 10)

	require.NoError(t, err)
	require.Len(t, events, 2)
	require.Len(t, gaps, 1)
	require.Equal(t, event(2, time.Now()).ID, gaps[0].ResumeFrom)
	events, gaps, err = st.ListWithGaps(ctx, event(2, time.Now()).ID, 10)
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Empty(t, gaps)
}

func TestGapMessageNamesCause(t *testing.T) {
	t.Parallel()
	lost := store.Gap{Reason: store.GapSlotLost, Detail: "dropped", LostAfter: 0x64, ResumeLSN: 0xC8}
	moved := lost
	moved.Detail = store.SlotMovedDetail
	pruned := store.Gap{Reason: store.GapEventsPruned, ResumeFrom: "evt_00000000000000000000000009"}

	require.Equal(t, "events after evt_1 may be missing because the replication slot was lost, "+
		"so changes committed between LSN 0/64 and 0/C8 were not captured", lost.Message("events after evt_1"))
	require.Equal(t, "events after evt_1 may be missing because the replication slot was created again or advanced by hand, "+
		"so changes committed between LSN 0/64 and 0/C8 were not captured", moved.Message("events after evt_1"))
	require.Equal(t, "events after evt_1 may be missing because the events up to evt_00000000000000000000000009 "+
		"were deleted past the retention period", pruned.Message("events after evt_1"))
}
