package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Reasons of a Gap, as consumers see them in resync_required messages and
// 410 errors.
const (
	// GapSlotLost marks changes missed while the replication slot was
	// dropped or invalidated, before an operator had a new one created.
	GapSlotLost = "slot_lost"
	// GapEventsPruned marks events deleted past the retention period.
	GapEventsPruned = "events_pruned"
)

// SlotMovedDetail is the Detail of a slot_lost gap whose slot was found
// past the position this service acknowledged: created again or advanced
// by hand.
const SlotMovedDetail = "moved past the acknowledged position (created again or advanced by hand)"

// Gap is a point in the event stream before which events may be missing. A
// reader whose cursor is below ResumeFrom has missed them; every event
// after ResumeFrom is stored.
type Gap struct {
	// ID is the civicbase.gaps row of a slot loss, 0 for the prune horizon.
	ID     int64
	Reason string
	// ResumeFrom is an event id; readers continue after it. It is empty
	// while an accepted slot loss waits for its new slot.
	ResumeFrom string
	// At is when the stream became complete again: the new slot's creation
	// for a slot loss, and the commit time of the newest pruned event for
	// the prune horizon.
	At time.Time
	// The members below describe slot losses only.
	Slot   string
	Detail string
	// LostAfter is the slot's checkpoint when the loss was accepted, and
	// ResumeLSN the new slot's consistent point. Changes committed between
	// them may be missing.
	LostAfter pglogrepl.LSN
	ResumeLSN pglogrepl.LSN
	// LastID is the newest event stored before the loss, empty when none.
	LastID string
}

// Message returns a clause for consumers that explains why events are
// missing.
// missing names what may be missing, such as "events after evt_…".
func (g Gap) Message(missing string) string {
	cause := fmt.Sprintf("the replication slot was lost, so changes committed between LSN %s and %s were not captured",
		g.LostAfter, g.ResumeLSN)
	switch {
	case g.Reason == GapEventsPruned:
		cause = fmt.Sprintf("the events up to %s were deleted past the retention period", g.ResumeFrom)
	case g.Detail == SlotMovedDetail:
		cause = fmt.Sprintf("the replication slot was created again or advanced by hand, so changes committed between LSN %s and %s were not captured",
			g.LostAfter, g.ResumeLSN)
	}
	return missing + " may be missing because " + cause
}

// gapColumns reads both kinds of gap in one shape. Its two %s take the
// conditions on civicbase.gaps and on civicbase.pruned.
const gapColumns = `SELECT id, 'slot_lost' AS reason, resume_from, resolved_at, slot_name, detail,
		lost_after::text, resume_lsn::text, coalesce(last_id, '')
	FROM civicbase.gaps WHERE resume_from IS NOT NULL AND %s
	UNION ALL
	SELECT 0, 'events_pruned', through_id, through_time, '', '', '0/0', '0/0', ''
	FROM civicbase.pruned WHERE %s`

// GapsAfter returns the gaps whose ResumeFrom is greater than cursor, in
// ResumeFrom order. A reader at cursor crosses each of them. An empty
// cursor returns every gap.
func (s *Store) GapsAfter(ctx context.Context, cursor string) ([]Gap, error) {
	query := fmt.Sprintf(gapColumns, "resume_from > $1", "through_id > $1") + " ORDER BY 3"
	rows, err := s.pool.Query(ctx, query, cursor)
	if err != nil {
		return nil, fmt.Errorf("reading gaps after %q: %w", cursor, err)
	}
	gaps, err := pgx.CollectRows(rows, scanGap)
	if err != nil {
		return nil, fmt.Errorf("reading gaps after %q: %w", cursor, err)
	}
	return gaps, nil
}

// GapAfter returns the gap with the greatest ResumeFrom above cursor, or nil
// when a reader at cursor crosses none. Continuing after its ResumeFrom
// skips every gap the cursor is behind.
func (s *Store) GapAfter(ctx context.Context, cursor string) (*Gap, error) {
	gaps, err := s.GapsAfter(ctx, cursor)
	if err != nil || len(gaps) == 0 {
		return nil, err
	}
	return &gaps[len(gaps)-1], nil
}

// GapSince returns the gap with the greatest ResumeFrom among those that a
// replay of the events committed at or after since would cross, or nil.
// Those are the slot losses resolved after since, and the prune horizon
// when pruned events were committed at or after since.
func (s *Store) GapSince(ctx context.Context, since time.Time) (*Gap, error) {
	query := fmt.Sprintf(gapColumns, "resolved_at > $1", "through_time >= $1") + " ORDER BY 3 DESC LIMIT 1"
	rows, err := s.pool.Query(ctx, query, since)
	if err != nil {
		return nil, fmt.Errorf("reading gaps after %s: %w", since.Format(time.RFC3339), err)
	}
	gap, err := pgx.CollectOneRow(rows, scanGap)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading gaps after %s: %w", since.Format(time.RFC3339), err)
	}
	return &gap, nil
}

func scanGap(row pgx.CollectableRow) (Gap, error) {
	var g Gap
	var lostAfter, resumeLSN string
	if err := row.Scan(&g.ID, &g.Reason, &g.ResumeFrom, &g.At, &g.Slot, &g.Detail, &lostAfter, &resumeLSN, &g.LastID); err != nil {
		return g, err
	}
	var err error
	if g.LostAfter, err = pglogrepl.ParseLSN(lostAfter); err != nil {
		return g, fmt.Errorf("parsing lost_after %q of gap %d: %w", lostAfter, g.ID, err)
	}
	if g.ResumeLSN, err = pglogrepl.ParseLSN(resumeLSN); err != nil {
		return g, fmt.Errorf("parsing resume_lsn %q of gap %d: %w", resumeLSN, g.ID, err)
	}
	return g, nil
}

// ListWithGaps returns what List returns, and the gaps after after, read
// in one round trip. The gaps are read after the events, so a gap whose
// later events are in the page is among them.
func (s *Store) ListWithGaps(ctx context.Context, after string, limit int) ([]Event, []Gap, error) {
	var batch pgx.Batch
	var events []Event
	var gaps []Gap
	batch.Queue(listQuery, after, limit).Query(func(rows pgx.Rows) error {
		var err error
		events, err = pgx.CollectRows(rows, scanEvent)
		return err
	})
	query := fmt.Sprintf(gapColumns, "resume_from > $1", "through_id > $1") + " ORDER BY 3"
	batch.Queue(query, after).Query(func(rows pgx.Rows) error {
		var err error
		gaps, err = pgx.CollectRows(rows, scanGap)
		return err
	})
	if err := s.pool.SendBatch(ctx, &batch).Close(); err != nil {
		return nil, nil, fmt.Errorf("listing events and gaps after %q: %w", after, err)
	}
	return events, gaps, nil
}

// AcceptSlotLoss records that the operator accepts the loss of slot, whose
// checkpoint was lostAfter, and returns the pending gap. The service then
// creates a new slot and calls ResolveGap. The reader also calls both for a
// slot it finds moved by hand. When a pending gap exists for the slot
// already, it is returned unchanged.
func (s *Store) AcceptSlotLoss(ctx context.Context, slot, detail string, lostAfter pglogrepl.LSN) (Gap, error) {
	_, err := s.pool.Exec(ctx, `INSERT INTO civicbase.gaps (slot_name, detail, lost_after, last_id)
		VALUES ($1, $2, $3, (SELECT max(id) FROM civicbase.events))
		ON CONFLICT (slot_name) WHERE resume_from IS NULL DO NOTHING`, slot, detail, lostAfter.String())
	if err != nil {
		return Gap{}, fmt.Errorf("recording the loss of slot %s: %w", slot, err)
	}
	gap, err := s.PendingGap(ctx, slot)
	if err != nil {
		return Gap{}, err
	}
	if gap == nil {
		return Gap{}, fmt.Errorf("recording the loss of slot %s: the pending gap row is missing after the insert", slot)
	}
	return *gap, nil
}

// PendingGap returns the accepted loss of slot that waits for a new slot,
// or nil.
func (s *Store) PendingGap(ctx context.Context, slot string) (*Gap, error) {
	var g Gap
	var lostAfter string
	err := s.pool.QueryRow(ctx, `SELECT id, slot_name, detail, lost_after::text, coalesce(last_id, '')
		FROM civicbase.gaps WHERE slot_name = $1 AND resume_from IS NULL`, slot).
		Scan(&g.ID, &g.Slot, &g.Detail, &lostAfter, &g.LastID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the pending gap of slot %s: %w", slot, err)
	}
	g.Reason = GapSlotLost
	if g.LostAfter, err = pglogrepl.ParseLSN(lostAfter); err != nil {
		return nil, fmt.Errorf("parsing lost_after %q of gap %d: %w", lostAfter, g.ID, err)
	}
	return &g, nil
}

// ResolveGap completes the pending gap id once its new slot exists: the new
// slot starts at resumeLSN and resumeFrom is the id readers continue after.
// The slot's checkpoint and acknowledged position move to resumeLSN in the
// same transaction.
func (s *Store) ResolveGap(ctx context.Context, id int64, slot string, resumeLSN pglogrepl.LSN, resumeFrom string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning to resolve gap %d: %w", id, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tag, err := tx.Exec(ctx, `UPDATE civicbase.gaps SET resume_lsn = $2, resume_from = $3, resolved_at = now()
		WHERE id = $1 AND resume_from IS NULL`, id, resumeLSN.String(), resumeFrom)
	if err != nil {
		return fmt.Errorf("resolving gap %d: %w", id, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("resolving gap %d: it is not pending", id)
	}
	_, err = tx.Exec(ctx, `INSERT INTO civicbase.checkpoints (slot_name, lsn, acked_lsn) VALUES ($1, $2, $2)
		ON CONFLICT (slot_name) DO UPDATE SET lsn = excluded.lsn, acked_lsn = excluded.acked_lsn, updated_at = now()`,
		slot, resumeLSN.String())
	if err != nil {
		return fmt.Errorf("moving checkpoint of slot %s to %s: %w", slot, resumeLSN, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing gap %d: %w", id, err)
	}
	return nil
}

// LastEventID returns the newest stored event id, or "" when none is stored.
func (s *Store) LastEventID(ctx context.Context) (string, error) {
	var id string
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(id), '') FROM civicbase.events").Scan(&id); err != nil {
		return "", fmt.Errorf("reading the newest event id: %w", err)
	}
	return id, nil
}

// NewestKnownID returns the greatest event id this database has stored,
// pruned ones included, or "" when it never stored one. A cursor past it
// comes from another database, such as one restored from a backup.
func (s *Store) NewestKnownID(ctx context.Context) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT greatest(
		coalesce((SELECT max(id) FROM civicbase.events), '') COLLATE "C",
		coalesce((SELECT through_id FROM civicbase.pruned), '') COLLATE "C")`).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("reading the newest event id: %w", err)
	}
	return id, nil
}
