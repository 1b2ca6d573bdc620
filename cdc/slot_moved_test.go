package cdc_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

// queryLSN runs a query that returns one pg_lsn as text.
func (b *bundle) queryLSN(t *testing.T, query string, args ...any) pglogrepl.LSN {
	t.Helper()
	var text string
	require.NoError(t, b.pool.QueryRow(context.Background(), query, args...).Scan(&text), query)
	lsn, err := pglogrepl.ParseLSN(text)
	require.NoError(t, err)
	return lsn
}

func (b *bundle) confirmedFlush(t *testing.T) pglogrepl.LSN {
	t.Helper()
	return b.queryLSN(t, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, b.cfg.Slot)
}

// requireMovedSlotGap checks that the store has one gap after the event
// before, from the stored checkpoint to the slot's new start.
func (b *bundle) requireMovedSlotGap(t *testing.T, before, after string, checkpoint, start pglogrepl.LSN) {
	t.Helper()
	gaps, err := b.store.GapsAfter(context.Background(), before)
	require.NoError(t, err)
	require.Len(t, gaps, 1)
	require.Equal(t, store.GapSlotLost, gaps[0].Reason)
	require.Equal(t, checkpoint, gaps[0].LostAfter)
	require.Equal(t, start, gaps[0].ResumeLSN)
	require.Greater(t, gaps[0].ResumeFrom, before)
	require.Less(t, gaps[0].ResumeFrom, after)
	require.Contains(t, gaps[0].Detail, "moved past the acknowledged position")
}

// setupStopped starts a reader, stores the event of row p1 and stops the
// reader. It returns the event's id and the stored checkpoint.
func setupStopped(t *testing.T) (*bundle, string, pglogrepl.LSN) {
	t.Helper()
	b := setup(t, profilesSchema, "")
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p1', 'n')`)
	before := b.waitEvents(t, 1)
	b.stopAndWaitInactive(t)
	checkpoint, err := b.store.Checkpoint(context.Background(), b.cfg.Slot)
	require.NoError(t, err)
	return b, before[0]["id"].(string), checkpoint
}

func TestRecreatedSlotRecordsGap(t *testing.T) {
	t.Parallel()
	b, before, checkpoint := setupStopped(t)

	b.exec(t, `SELECT pg_drop_replication_slot($1)`, b.cfg.Slot)
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('lost', 'n')`)
	start := b.queryLSN(t, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, b.cfg.Slot)
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p2', 'n')`)
	reader := b.restart(t)
	waitFor(t, 30*time.Second, "reader streaming", func() bool { return reader.Status().Streaming })
	events := b.waitEvents(t, 2)

	require.Equal(t, []any{"p1", "p2"}, instanceIDs(events), "the change made without a slot is lost")
	b.requireMovedSlotGap(t, before, events[1]["id"].(string), checkpoint, start)
	require.NoError(t, reader.Status().Err)
}

func TestAdvancedSlotRecordsGap(t *testing.T) {
	t.Parallel()
	b, before, checkpoint := setupStopped(t)

	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('skipped', 'n')`)
	start := b.queryLSN(t, `SELECT end_lsn::text FROM pg_replication_slot_advance($1, pg_current_wal_lsn())`, b.cfg.Slot)
	reader := b.restart(t)
	waitFor(t, 30*time.Second, "reader streaming", func() bool { return reader.Status().Streaming })
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p2', 'n')`)
	events := b.waitEvents(t, 2)

	require.Equal(t, []any{"p1", "p2"}, instanceIDs(events), "the change the slot was advanced past is lost")
	b.requireMovedSlotGap(t, before, events[1]["id"].(string), checkpoint, start)
}

// Between restarts the reader acknowledges positions past its last event
// while idle. Each must be stored before the slot moves there; otherwise
// the next start could not tell them from a slot moved by hand.
func TestIdleAcksStoredBeforeSent(t *testing.T) {
	t.Parallel()
	b := setup(t, profilesSchema+`; CREATE SCHEMA filler; CREATE TABLE filler.wal (body text)`, "")
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p1', 'n')`)
	b.waitEvents(t, 1)

	for round := range 3 {
		b.exec(t, `INSERT INTO filler.wal SELECT repeat('x', 100) FROM generate_series(1, 1000)`)
		target := b.queryLSN(t, `SELECT pg_current_wal_lsn()::text`)
		waitFor(t, 30*time.Second, "slot acknowledged past the unwatched writes", func() bool {
			confirmed := b.confirmedFlush(t)
			// Read after the slot, so a position sent in between is stored.
			stored := b.queryLSN(t, `SELECT lsn::text FROM civicbase.checkpoints WHERE slot_name = $1`, b.cfg.Slot)
			require.LessOrEqual(t, confirmed, stored, "round %d: the slot is acknowledged past the stored position", round)
			return confirmed >= target
		})
		b.stopAndWaitInactive(t)
		b.start(t)
	}
	b.exec(t, `INSERT INTO user_profiles (id, name) VALUES ('p2', 'n')`)

	require.Equal(t, []any{"p1", "p2"}, instanceIDs(b.waitEvents(t, 2)))
	gaps, err := b.store.GapsAfter(context.Background(), "")
	require.NoError(t, err)
	require.Empty(t, gaps)
	require.NoError(t, b.reader.Status().Err)
}
