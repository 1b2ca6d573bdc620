// Package store keeps events and the replication checkpoint in the watched
// database's civicbase schema, and reads them back in commit order.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NotifyChannel is the LISTEN/NOTIFY channel signalled after each stored
// batch. The payload is the newest event id, never event data.
const NotifyChannel = "civicbase_events"

// Event is one stored event. Payload holds the exact JSON bytes that
// consumers receive.
type Event struct {
	ID         string
	Event      string
	Model      string
	Table      string
	InstanceID *string
	CommitLSN  pglogrepl.LSN
	CommitTime time.Time
	Txid       uint32
	Payload    []byte
}

// Checkpoint is the durable replication position of one slot. Write also
// records it as the slot's acknowledged position, which the caller may send
// to the slot once Write has returned.
type Checkpoint struct {
	Slot string
	LSN  pglogrepl.LSN
}

// Store reads and writes the civicbase schema through a connection pool.
type Store struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	written chan struct{} // closed and replaced after each write
}

// New returns a Store on pool. Migrations must have been applied.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool, written: make(chan struct{})} }

// Written returns a channel that is closed after the next committed write of
// events or deliveries by this process, so that delivery workers wake at once
// instead of polling.
func (s *Store) Written() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

func (s *Store) signalWritten() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.written)
	s.written = make(chan struct{})
}

// Pool returns the underlying connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Write stores events and, when cp is not nil, moves the checkpoint and the
// acknowledged position, all in one transaction. Events whose id is already stored are skipped, so a
// replayed transaction leaves no duplicates.
func (s *Store) Write(ctx context.Context, events []Event, cp *Checkpoint) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning store transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	if len(events) > 0 {
		if err := insertEvents(ctx, tx, events); err != nil {
			return err
		}
		if err := fanOut(ctx, tx, events[0].ID, events[len(events)-1].ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, events[len(events)-1].ID); err != nil {
			return fmt.Errorf("notifying %s: %w", NotifyChannel, err)
		}
	}
	if cp != nil {
		_, err := tx.Exec(ctx, `INSERT INTO civicbase.checkpoints (slot_name, lsn, acked_lsn) VALUES ($1, $2, $2)
			ON CONFLICT (slot_name) DO UPDATE SET lsn = GREATEST(checkpoints.lsn, excluded.lsn),
				acked_lsn = GREATEST(checkpoints.acked_lsn, excluded.acked_lsn), updated_at = now()`,
			cp.Slot, cp.LSN.String())
		if err != nil {
			return fmt.Errorf("moving checkpoint of slot %s to %s: %w", cp.Slot, cp.LSN, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing %d events: %w", len(events), err)
	}
	if len(events) > 0 {
		s.signalWritten()
	}
	return nil
}

var eventColumns = []string{"id", "event", "model", "table_name", "instance_id", "commit_lsn", "commit_time", "txid", "payload"}

// insertEvents writes a batch with COPY, the fastest path. COPY cannot skip
// rows that exist, so when the batch overlaps stored events (a transaction
// replayed after a crash) it falls back to an INSERT that skips known ids.
func insertEvents(ctx context.Context, tx pgx.Tx, events []Event) error {
	if _, err := tx.Exec(ctx, "SAVEPOINT copy_events"); err != nil {
		return fmt.Errorf("creating savepoint: %w", err)
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"civicbase", "events"}, eventColumns, pgx.CopyFromSlice(len(events), func(i int) ([]any, error) {
		e := &events[i]
		return []any{e.ID, e.Event, e.Model, e.Table, e.InstanceID, int64(e.CommitLSN), e.CommitTime, int64(e.Txid), e.Payload}, nil
	}))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UniqueViolation {
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT copy_events"); err != nil {
			return fmt.Errorf("rolling back to savepoint: %w", err)
		}
		return insertSkippingKnown(ctx, tx, events)
	}
	if err != nil {
		return fmt.Errorf("copying %d events from %s to %s: %w", len(events), events[0].ID, events[len(events)-1].ID, err)
	}
	return nil
}

// insertSkippingKnown writes a batch with one statement over column arrays
// and skips ids that are already stored.
func insertSkippingKnown(ctx context.Context, tx pgx.Tx, events []Event) error {
	n := len(events)
	ids, names, models, tables := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	instances := make([]*string, n)
	lsns, times := make([]int64, n), make([]time.Time, n)
	txids := make([]int64, n)
	payloads := make([]string, n)
	for i, e := range events {
		ids[i], names[i], models[i], tables[i] = e.ID, e.Event, e.Model, e.Table
		instances[i] = e.InstanceID
		lsns[i], times[i], txids[i] = int64(e.CommitLSN), e.CommitTime, int64(e.Txid)
		payloads[i] = string(e.Payload)
	}
	_, err := tx.Exec(ctx, `INSERT INTO civicbase.events
		(id, event, model, table_name, instance_id, commit_lsn, commit_time, txid, payload)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
			$6::int8[], $7::timestamptz[], $8::int8[], $9::text[]::json[])
		ON CONFLICT (id) DO NOTHING`,
		ids, names, models, tables, instances, lsns, times, txids, payloads)
	if err != nil {
		return fmt.Errorf("inserting %d events from %s to %s: %w", n, ids[0], ids[n-1], err)
	}
	return nil
}

// Checkpoint returns the stored position of slot, or 0 when none is stored.
func (s *Store) Checkpoint(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	return s.slotLSN(ctx, "lsn", "checkpoint", slot)
}

// Acknowledged returns the greatest position stored for slot as
// acknowledged to it, or 0 when none is stored: before the first write, or
// in a row last written by a version that did not store acknowledgements.
func (s *Store) Acknowledged(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	return s.slotLSN(ctx, "acked_lsn", "acknowledged position", slot)
}

// slotLSN reads the pg_lsn column of slot's checkpoint row, named
// description in errors. A missing row or NULL returns 0.
func (s *Store) slotLSN(ctx context.Context, column, description, slot string) (pglogrepl.LSN, error) {
	var text string
	query := "SELECT coalesce(" + column + ", '0/0')::text FROM civicbase.checkpoints WHERE slot_name = $1"
	err := s.pool.QueryRow(ctx, query, slot).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s of slot %s: %w", description, slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return 0, fmt.Errorf("parsing %s %q of slot %s: %w", description, text, slot, err)
	}
	return lsn, nil
}

// List returns up to limit events with ids greater than after, in commit
// order. An empty after starts at the oldest stored event.
func (s *Store) List(ctx context.Context, after string, limit int) ([]Event, error) {
	rows, err := s.pool.Query(ctx, listQuery, after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing events after %q: %w", after, err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("reading events after %q: %w", after, err)
	}
	return events, nil
}

const listQuery = `SELECT id, event, model, table_name, instance_id, commit_lsn, commit_time, txid, payload::text
	FROM civicbase.events WHERE id > $1 ORDER BY id LIMIT $2`

func scanEvent(row pgx.CollectableRow) (Event, error) {
	var e Event
	var lsn, txid int64
	var payload string
	if err := row.Scan(&e.ID, &e.Event, &e.Model, &e.Table, &e.InstanceID, &lsn, &e.CommitTime, &txid, &payload); err != nil {
		return e, err
	}
	e.CommitLSN, e.Txid, e.Payload = pglogrepl.LSN(lsn), uint32(txid), []byte(payload)
	return e, nil
}

// Exists reports whether an event with this id is stored.
func (s *Store) Exists(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM civicbase.events WHERE id = $1)", id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("looking up event %s: %w", id, err)
	}
	return ok, nil
}

// pruneQuery deletes up to $2 events committed before $1 and, in the same
// statement, raises the prune horizon to the greatest id and commit time it
// deleted, so a reader that finds events gone also finds the horizon moved.
const pruneQuery = `WITH deleted AS (
		DELETE FROM civicbase.events WHERE id IN (
			SELECT id FROM civicbase.events WHERE commit_time < $1 ORDER BY commit_time LIMIT $2)
		RETURNING id, commit_time
	), horizon AS (
		INSERT INTO civicbase.pruned (through_id, through_time)
		SELECT max(id), max(commit_time) FROM deleted HAVING count(*) > 0
		ON CONFLICT (singleton) DO UPDATE SET through_id = GREATEST(pruned.through_id, excluded.through_id),
			through_time = GREATEST(pruned.through_time, excluded.through_time), pruned_at = now()
	)
	SELECT count(*) FROM deleted`

// Prune deletes events committed before cutoff, at most batch rows per
// statement so that no single delete holds locks or bloats WAL for long,
// and records the prune horizon that GapsAfter reports. It returns how many
// rows it deleted.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	var total int64
	for {
		var deleted int64
		if err := s.pool.QueryRow(ctx, pruneQuery, cutoff, batch).Scan(&deleted); err != nil {
			return total, fmt.Errorf("pruning events before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		total += deleted
		if deleted < int64(batch) {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
