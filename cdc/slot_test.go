package cdc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/store"
)

// recreateTimeout bounds the wait for a reader to create a slot after
// AcceptSlotLoss: it looks again every 10 s.
const recreateTimeout = 60 * time.Second

// stopAndWaitInactive stops the bundle's reader and waits until the server
// has released the slot.
func (b *bundle) stopAndWaitInactive(t *testing.T) {
	t.Helper()
	b.stop()
	waitFor(t, 10*time.Second, "slot inactive", func() bool {
		var active bool
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, b.cfg.Slot).Scan(&active))
		return !active
	})
}

// restart starts a new reader on the bundle without waiting for it to
// stream, and returns it.
func (b *bundle) restart(t *testing.T) *cdc.Reader {
	t.Helper()
	reader := cdc.NewReader(b.cfg, b.pool, b.store, testLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reader.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("reader did not stop within 30s of cancel")
		}
	})
	return reader
}

// waitSlotLost waits until reader reports a lost slot and returns the error.
func waitSlotLost(t *testing.T, reader *cdc.Reader) error {
	t.Helper()
	waitFor(t, 30*time.Second, "lost slot reported", func() bool { return errors.Is(reader.Status().Err, cdc.ErrSlotLost) })
	return reader.Status().Err
}

func (b *bundle) slotExists(t *testing.T) bool {
	t.Helper()
	var exists bool
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, b.cfg.Slot).Scan(&exists))
	return exists
}

func instanceIDs(events []map[string]any) []any {
	ids := make([]any, len(events))
	for i, e := range events {
		ids[i] = e["instanceId"]
	}
	return ids
}

func TestDroppedSlotWaitsForRecreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, profilesSchema, "")
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p1', 'n')`)
	before := b.waitEvents(t, 1)
	b.stopAndWaitInactive(t)
	checkpoint, err := b.store.Checkpoint(ctx, b.cfg.Slot)
	require.NoError(t, err)
	b.exec(t, `SELECT pg_drop_replication_slot($1)`, b.cfg.Slot)
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('lost', 'n')`)

	reader := b.restart(t)
	lost := waitSlotLost(t, reader)

	require.ErrorContains(t, lost, "slot "+b.cfg.Slot+" does not exist, but events up to LSN "+checkpoint.String())
	require.ErrorContains(t, lost, "run `civicbase recreate-slot`")
	require.False(t, b.slotExists(t), "the reader must not create a new slot over the gap")
	require.False(t, reader.Status().Streaming)

	gap, err := cdc.AcceptSlotLoss(ctx, b.pool, b.store, b.cfg.Slot)
	require.NoError(t, err)
	require.Equal(t, "dropped", gap.Detail)
	require.Equal(t, checkpoint, gap.LostAfter)
	require.Equal(t, before[0]["id"], gap.LastID)
	waitFor(t, recreateTimeout, "reader streaming on a new slot", func() bool { return reader.Status().Streaming })
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p2', 'n')`)
	events := b.waitEvents(t, 2)

	require.Equal(t, []any{"p1", "p2"}, instanceIDs(events), "the change made without a slot is lost")
	gaps, err := b.store.GapsAfter(ctx, before[0]["id"].(string))
	require.NoError(t, err)
	require.Len(t, gaps, 1)
	require.Equal(t, store.GapSlotLost, gaps[0].Reason)
	require.Greater(t, gaps[0].ResumeFrom, before[0]["id"].(string))
	require.Less(t, gaps[0].ResumeFrom, events[1]["id"].(string))
	require.Greater(t, gaps[0].ResumeLSN, checkpoint)
	after, err := b.store.GapsAfter(ctx, gaps[0].ResumeFrom)
	require.NoError(t, err)
	require.Empty(t, after)
	_, err = cdc.AcceptSlotLoss(ctx, b.pool, b.store, b.cfg.Slot)
	require.ErrorContains(t, err, "is usable (wal_status reserved)")
}

func TestDeletedCheckpointStillReportsLoss(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p1', 'n')`)
	events := b.waitEvents(t, 1)
	b.stopAndWaitInactive(t)
	b.exec(t, `SELECT pg_drop_replication_slot($1)`, b.cfg.Slot)
	b.exec(t, `DELETE FROM civicbase.checkpoints`)

	lost := waitSlotLost(t, b.restart(t))

	require.ErrorContains(t, lost, "events up to "+events[0]["id"].(string)+" were stored from an earlier slot whose checkpoint was deleted")
	require.False(t, b.slotExists(t))
}

// A reader that stops after creating the new slot but before completing the
// gap completes it on its next start.
func TestPendingGapCompletedForExistingSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, profilesSchema, "")
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p1', 'n')`)
	b.waitEvents(t, 1)
	b.stopAndWaitInactive(t)
	b.exec(t, `SELECT pg_drop_replication_slot($1)`, b.cfg.Slot)
	_, err := cdc.AcceptSlotLoss(ctx, b.pool, b.store, b.cfg.Slot)
	require.NoError(t, err)
	var created string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, b.cfg.Slot).Scan(&created))

	reader := b.restart(t)
	waitFor(t, 30*time.Second, "reader streaming", func() bool { return reader.Status().Streaming })

	gaps, err := b.store.GapsAfter(ctx, "")
	require.NoError(t, err)
	require.Len(t, gaps, 1)
	require.Equal(t, created, gaps[0].ResumeLSN.String())
	lsn, err := pglogrepl.ParseLSN(created)
	require.NoError(t, err)
	require.Equal(t, cdc.ResumeBoundary(lsn), gaps[0].ResumeFrom)
	pending, err := b.store.PendingGap(ctx, b.cfg.Slot)
	require.NoError(t, err)
	require.Nil(t, pending)
}

func TestAcceptSlotLossRejectsUsableSlot(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema, "")

	_, err := cdc.AcceptSlotLoss(context.Background(), b.pool, b.store, b.cfg.Slot)

	require.ErrorContains(t, err, "slot "+b.cfg.Slot+" is usable (wal_status reserved), so no change was lost")
	require.True(t, b.slotExists(t))
}

func TestInvalidatedSlotWaitsForRecreate(t *testing.T) {
	t.Parallel()
	c := pgtest.OwnCluster(t)
	ctx := context.Background()
	b := setupOn(t, c.URL("postgres"), profilesSchema+`; CREATE SCHEMA filler; CREATE TABLE filler.wal (body text)`, "")
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p1', 'n')`)
	b.waitEvents(t, 1)
	b.stopAndWaitInactive(t)

	invalidateSlot(t, b)
	reader := b.restart(t)
	lost := waitSlotLost(t, reader)

	require.ErrorContains(t, lost, "slot "+b.cfg.Slot+" was invalidated (wal_status lost)")
	require.ErrorContains(t, lost, "raise max_slot_wal_keep_size")
	require.ErrorContains(t, lost, "run `civicbase recreate-slot`")
	b.exec(t, `ALTER SYSTEM RESET max_slot_wal_keep_size`)
	b.exec(t, `SELECT pg_reload_conf()`)
	gap, err := cdc.AcceptSlotLoss(ctx, b.pool, b.store, b.cfg.Slot)
	require.NoError(t, err)
	require.Equal(t, "invalidated (wal_status lost)", gap.Detail)
	waitFor(t, recreateTimeout, "reader streaming on a new slot", func() bool { return reader.Status().Streaming })
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p2', 'n')`)

	require.Equal(t, []any{"p1", "p2"}, instanceIDs(b.waitEvents(t, 2)))
}

// invalidateSlot makes PostgreSQL invalidate the bundle's inactive slot: it
// limits the WAL a slot may retain to less than a segment, then writes and
// switches WAL segments and runs checkpoints until wal_status is lost.
func invalidateSlot(t *testing.T, b *bundle) {
	t.Helper()
	b.exec(t, `ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`)
	b.exec(t, `SELECT pg_reload_conf()`)
	waitFor(t, 60*time.Second, "slot invalidated", func() bool {
		b.exec(t, `INSERT INTO filler.wal SELECT repeat('x', 1000) FROM generate_series(1, 1000)`)
		b.exec(t, `SELECT pg_switch_wal()`)
		b.exec(t, `CHECKPOINT`)
		var status string
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, b.cfg.Slot).Scan(&status))
		return status == "lost"
	})
}
