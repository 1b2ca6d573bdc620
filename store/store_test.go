package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func setup(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, sql.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))))
	return store.New(pool)
}

func event(i int, at time.Time) store.Event {
	id := fmt.Sprintf("evt_%026x", i)
	instance := fmt.Sprint(i)
	return store.Event{
		ID: id, Event: "data.created", Model: "Item", Table: "public.items", InstanceID: &instance,
		CommitLSN: pglogrepl.LSN(1000 + i), CommitTime: at, Txid: uint32(i),
		Payload: []byte(fmt.Sprintf(`{"id":%q,"n":%d}`, id, i)),
	}
}

func TestWriteSkipsStoredIDs(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	now := time.Now()

	require.NoError(t, st.Write(ctx, []store.Event{event(1, now), event(2, now)}, nil))
	// A replay overlaps what is stored: COPY fails and the fallback skips.
	require.NoError(t, st.Write(ctx, []store.Event{event(2, now), event(3, now)}, &store.Checkpoint{Slot: "s", LSN: 42}))
	events, err := st.List(ctx, "", 10)
	require.NoError(t, err)

	require.Len(t, events, 3)
	for i, e := range events {
		require.Equal(t, event(i+1, now).ID, e.ID)
		require.Equal(t, string(event(i+1, now).Payload), string(e.Payload))
		require.Equal(t, pglogrepl.LSN(1001+i), e.CommitLSN)
	}
	cp, err := st.Checkpoint(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, pglogrepl.LSN(42), cp)
}

func TestCheckpointNeverMovesBack(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()

	require.NoError(t, st.Write(ctx, nil, &store.Checkpoint{Slot: "s", LSN: 100}))
	require.NoError(t, st.Write(ctx, nil, &store.Checkpoint{Slot: "s", LSN: 50}))
	cp, err := st.Checkpoint(ctx, "s")
	require.NoError(t, err)

	require.Equal(t, pglogrepl.LSN(100), cp)
	none, err := st.Checkpoint(ctx, "other")
	require.NoError(t, err)
	require.Zero(t, none)
}

func TestAcknowledgedFollowsCheckpoint(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	none, err := st.Acknowledged(ctx, "s")
	require.NoError(t, err)
	require.Zero(t, none)

	require.NoError(t, st.Write(ctx, nil, &store.Checkpoint{Slot: "s", LSN: 100}))
	require.NoError(t, st.Write(ctx, nil, &store.Checkpoint{Slot: "s", LSN: 50}))
	acked, err := st.Acknowledged(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, pglogrepl.LSN(100), acked)

	// A row written by a version that did not store acknowledgements.
	_, err = st.Pool().Exec(ctx, `UPDATE civicbase.checkpoints SET acked_lsn = NULL`)
	require.NoError(t, err)
	unknown, err := st.Acknowledged(ctx, "s")
	require.NoError(t, err)
	require.Zero(t, unknown)
	require.NoError(t, st.Write(ctx, nil, &store.Checkpoint{Slot: "s", LSN: 120}))
	acked, err = st.Acknowledged(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, pglogrepl.LSN(120), acked)
}

func TestListPagesInIDOrder(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	var batch []store.Event
	for i := 1; i <= 25; i++ {
		batch = append(batch, event(i, time.Now()))
	}
	require.NoError(t, st.Write(ctx, batch, nil))

	var seen []string
	after := ""
	for {
		page, err := st.List(ctx, after, 10)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			seen = append(seen, e.ID)
		}
		after = page[len(page)-1].ID
	}

	require.Len(t, seen, 25)
	for i, id := range seen {
		require.Equal(t, event(i+1, time.Now()).ID, id)
	}
}

func TestPruneDeletesOnlyOldEvents(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	old := time.Now().Add(-8 * 24 * time.Hour)
	var batch []store.Event
	for i := 1; i <= 23; i++ {
		batch = append(batch, event(i, old))
	}
	batch = append(batch, event(24, time.Now()), event(25, time.Now()))
	require.NoError(t, st.Write(ctx, batch, nil))

	deleted, err := st.Prune(ctx, time.Now().Add(-7*24*time.Hour), 5)
	require.NoError(t, err)
	left, err := st.List(ctx, "", 100)
	require.NoError(t, err)

	require.Equal(t, int64(23), deleted)
	require.Len(t, left, 2)
	require.Equal(t, event(24, time.Now()).ID, left[0].ID)
}

func TestPruneDeliveriesKeepsPending(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	_, err := st.CreateWebhook(ctx, store.Webhook{ID: "wh_1", URL: "https://example.com", Events: []string{"*"}, Secret: "plain:x"})
	require.NoError(t, err)
	require.NoError(t, st.Write(ctx, []store.Event{event(1, time.Now()), event(2, time.Now()), event(3, time.Now())}, nil))
	_, err = st.Pool().Exec(ctx, `UPDATE civicbase.deliveries SET created_at = now() - interval '8 days',
		status = CASE event_id WHEN $1 THEN 'delivered' WHEN $2 THEN 'dead' ELSE 'pending' END`, event(1, time.Now()).ID, event(2, time.Now()).ID)
	require.NoError(t, err)

	n, err := st.PruneDeliveries(ctx, time.Now().Add(-7*24*time.Hour), 1)
	require.NoError(t, err)
	left, err := st.Deliveries(ctx, "wh_1", "", 0, 10)
	require.NoError(t, err)

	require.Equal(t, int64(2), n)
	require.Len(t, left, 1)
	require.Equal(t, store.StatusPending, left[0].Status)
}
