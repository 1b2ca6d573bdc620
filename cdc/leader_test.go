package cdc_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/cdc"
)

// lockHolders returns the server process ids that hold the slot lock and
// the number that wait for it.
func lockHolders(t *testing.T, b *bundle) (holders []int32, waiting int) {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT pid, granted FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND ((classid::int8 << 32) | objid::int8) = $1`, cdc.LeaderLockKey(b.cfg.Slot))
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var pid int32
		var granted bool
		require.NoError(t, rows.Scan(&pid, &granted))
		if granted {
			holders = append(holders, pid)
		} else {
			waiting++
		}
	}
	require.NoError(t, rows.Err())
	return holders, waiting
}

// setupWithStandby starts a reader, as setup does, and a second reader on
// the same slot, and waits until the second one waits for the slot lock.
func setupWithStandby(t *testing.T) (*bundle, *cdc.Reader) {
	t.Helper()
	b := setup(t, `CREATE TABLE items (id int PRIMARY KEY)`, "")
	standby := b.restart(t)
	waitFor(t, 20*time.Second, "standby waiting on the slot lock", func() bool { _, w := lockHolders(t, b); return w == 1 })
	return b, standby
}

func TestStandbyWaitsForSlotLock(t *testing.T) {
	t.Parallel()
	b, standby := setupWithStandby(t)

	holders, _ := lockHolders(t, b)
	require.Len(t, holders, 1)
	require.Equal(t, cdc.RoleLeader, b.reader.Status().Role)
	require.True(t, b.reader.Status().Streaming)
	require.Equal(t, cdc.RoleStandby, standby.Status().Role)
	require.False(t, standby.Status().Streaming)

	b.exec(t, `INSERT INTO items SELECT generate_series(1, 100)`)
	require.Len(t, b.waitEvents(t, 100), 100)
}

func TestStandbyTakesOverWhenLeaderStops(t *testing.T) {
	t.Parallel()
	b, standby := setupWithStandby(t)
	b.exec(t, `INSERT INTO items SELECT generate_series(1, 100)`)
	b.waitEvents(t, 100)

	b.stop()
	waitFor(t, 20*time.Second, "standby streaming", func() bool { return standby.Status().Streaming })
	b.exec(t, `INSERT INTO items SELECT generate_series(101, 200)`)

	events := b.waitEvents(t, 200)
	require.Len(t, events, 200, "no event is stored twice")
	require.Equal(t, cdc.RoleLeader, standby.Status().Role)
	gaps, err := b.store.GapsAfter(context.Background(), "")
	require.NoError(t, err)
	require.Empty(t, gaps, "a takeover records no gap")
}

func TestLeaderStopsWhenLockConnectionDies(t *testing.T) {
	t.Parallel()
	b, standby := setupWithStandby(t)
	holders, _ := lockHolders(t, b)
	require.Len(t, holders, 1)

	// Only the lock connection ends; the first reader's replication
	// connection is healthy, yet it must stop reading.
	_, err := b.pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, holders[0])
	require.NoError(t, err)

	waitFor(t, 20*time.Second, "standby streaming", func() bool { return standby.Status().Streaming })
	require.Equal(t, cdc.RoleLeader, standby.Status().Role)
	waitFor(t, 20*time.Second, "first reader standing by", func() bool { _, w := lockHolders(t, b); return w == 1 })
	require.Equal(t, cdc.RoleStandby, b.reader.Status().Role)
	require.False(t, b.reader.Status().Streaming)
	var walsenders int
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active`, b.cfg.Slot).Scan(&walsenders))
	require.Equal(t, 1, walsenders)

	b.exec(t, `INSERT INTO items SELECT generate_series(1, 100)`)
	require.Len(t, b.waitEvents(t, 100), 100)
}
