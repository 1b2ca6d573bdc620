package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/civicbase/civicbase/store"
)

// SlotRecheckInterval is how often a reader whose slot is lost looks at it
// again, so it resumes at most this long after an operator runs `civicbase
// recreate-slot`.
const SlotRecheckInterval = 10 * time.Second

// slotLostLogInterval is how often a lost slot is logged again while it
// lasts.
const slotLostLogInterval = 10 * time.Minute

// How a slot was lost, as recorded in civicbase.gaps.detail.
const (
	lostDropped     = "dropped"
	lostInvalidated = "invalidated (wal_status lost)"
	lostMoved       = store.SlotMovedDetail
)

// recoverySteps ends every lost-slot error: what the operator runs, and
// what consumers then see.
const recoverySteps = "to continue with a new slot, run `civicbase recreate-slot` with this service's DATABASE_URL and CIVICBASE_CONFIG: " +
	"it records the gap and drops the lost slot, the service then creates a new slot within %s, and WebSocket and GET /events " +
	"consumers whose position is before the gap get resync_required; see \"When a slot is lost\" in the README"

// movedSlotSteps is logged with a slot that was moved by hand.
const movedSlotSteps = "the slot was dropped and created again by hand, or advanced with pg_replication_slot_advance; " +
	"the gap is recorded, so WebSocket and GET /events consumers whose position is before it get resync_required and must reload their state; " +
	"webhook receivers get no marker, so bring them up to date by other means; to replace the service's slot, stop the service, " +
	"drop the slot and run `civicbase recreate-slot`, and never create or advance the slot by hand; see \"When a slot is lost\" in the README"

// slotLostError returns the ErrSlotLost error for the slot, with the
// position stored from it and the steps to recover. loss is lostDropped or
// lostInvalidated.
func (r *Reader) slotLostError(ctx context.Context, loss string, checkpoint pglogrepl.LSN) error {
	steps := fmt.Sprintf(recoverySteps, SlotRecheckInterval)
	if loss == lostInvalidated {
		return fmt.Errorf("%w: slot %s was invalidated (wal_status lost) because it retained more WAL than max_slot_wal_keep_size allows, "+
			"so changes committed after LSN %s are gone from the WAL; %s; raise max_slot_wal_keep_size (or set it to -1) so that "+
			"a stopped or slow service does not lose its slot again", ErrSlotLost, r.cfg.Slot, checkpoint, steps)
	}
	newest, err := r.store.LastEventID(ctx)
	if err != nil {
		return err
	}
	if checkpoint == 0 {
		return fmt.Errorf("%w: slot %s does not exist, but events up to %s were stored from an earlier slot whose checkpoint "+
			"was deleted, so changes committed after them may be missing; %s", ErrSlotLost, r.cfg.Slot, newest, steps)
	}
	return fmt.Errorf("%w: slot %s does not exist, but events up to LSN %s (newest %s) were stored from it, "+
		"so changes committed after that may be missing; %s", ErrSlotLost, r.cfg.Slot, checkpoint, newest, steps)
}

// reportSlotLost logs err at error level, again only after
// slotLostLogInterval or when the error changes.
func (r *Reader) reportSlotLost(ctx context.Context, err error) {
	if err.Error() == r.lostReport.msg && time.Since(r.lostReport.at) < slotLostLogInterval {
		return
	}
	r.lostReport.msg, r.lostReport.at = err.Error(), time.Now()
	r.log.ErrorContext(ctx, "replication slot lost; serving stored events only until an operator recreates the slot",
		"slot", r.cfg.Slot, "err", err)
}

// missingSlot handles a slot that does not exist. On first start it creates
// one. When events were stored from an earlier slot, it creates one only
// after an operator accepted the loss with `civicbase recreate-slot`, and
// then completes the gap that the command recorded.
func (r *Reader) missingSlot(ctx context.Context, conn *pgconn.PgConn, checkpoint pglogrepl.LSN) (pglogrepl.LSN, error) {
	newest, err := r.store.LastEventID(ctx)
	if err != nil {
		return 0, err
	}
	// Stored events without a checkpoint mean the checkpoint row was
	// deleted by hand; the slot that produced them is gone all the same.
	if checkpoint == 0 && newest == "" {
		return r.createSlot(ctx, conn)
	}
	gap, err := r.store.PendingGap(ctx, r.cfg.Slot)
	if err != nil {
		return 0, err
	}
	if gap == nil {
		return 0, r.slotLostError(ctx, lostDropped, checkpoint)
	}
	lsn, err := r.createSlot(ctx, conn)
	if err != nil {
		return 0, err
	}
	return r.resolveGap(ctx, gap, lsn)
}

// resumeSlot returns the position to stream an existing, usable slot from.
// It completes an accepted loss whose new slot exists but whose gap was not
// completed, because the process stopped in between: the reader completes
// a gap before it streams, so that slot is still at its consistent point,
// confirmed. Otherwise it checks that the slot was not moved by hand.
func (r *Reader) resumeSlot(ctx context.Context, checkpoint, confirmed pglogrepl.LSN) (pglogrepl.LSN, error) {
	gap, err := r.store.PendingGap(ctx, r.cfg.Slot)
	if err != nil {
		return 0, err
	}
	if gap != nil {
		return r.resolveGap(ctx, gap, confirmed)
	}
	return r.checkSlotMoved(ctx, checkpoint, confirmed)
}

// checkSlotMoved records a gap when the slot's confirmed position is past
// every position this service acknowledged. The service stores each
// position before it sends it, so only someone else can have moved the
// slot there: it was dropped and created again by hand, or advanced with
// pg_replication_slot_advance, and the changes committed in between were
// never read. It returns the position to stream from.
//
// Unlike for a lost slot, reading goes on, because the slot in place already
// starts after the gap. Waiting for an operator cannot bring those changes
// back, and it would pin WAL and hold up the changes after the gap.
//
// confirmed must be read before the acknowledged position. A previous
// leader that is still exiting may move the slot in between, but it stored
// that position first, so the read here returns it.
func (r *Reader) checkSlotMoved(ctx context.Context, checkpoint, confirmed pglogrepl.LSN) (pglogrepl.LSN, error) {
	acked, err := r.store.Acknowledged(ctx, r.cfg.Slot)
	if err != nil {
		return 0, err
	}
	if acked == 0 {
		r.log.InfoContext(ctx, "no acknowledged position stored for the slot; a slot moved by hand is detected from the next start on",
			"slot", r.cfg.Slot, "lsn", confirmed)
		return checkpoint, nil
	}
	if confirmed <= acked {
		return checkpoint, nil
	}
	gap, err := r.store.AcceptSlotLoss(ctx, r.cfg.Slot, lostMoved, acked)
	if err != nil {
		return 0, err
	}
	resumeFrom := ResumeBoundary(confirmed)
	if err := r.store.ResolveGap(ctx, gap.ID, r.cfg.Slot, confirmed, resumeFrom); err != nil {
		return 0, err
	}
	r.log.ErrorContext(ctx, "replication slot moved past the position this service acknowledged; the changes in between were not captured",
		"slot", r.cfg.Slot, "gap_id", gap.ID, "lost_after", acked, "lsn", confirmed, "resume_from", resumeFrom, "steps", movedSlotSteps)
	return confirmed, nil
}

// resolveGap records that the new slot starts at lsn and moves the
// checkpoint there.
func (r *Reader) resolveGap(ctx context.Context, gap *store.Gap, lsn pglogrepl.LSN) (pglogrepl.LSN, error) {
	resumeFrom := ResumeBoundary(lsn)
	if err := r.store.ResolveGap(ctx, gap.ID, r.cfg.Slot, lsn, resumeFrom); err != nil {
		return 0, err
	}
	r.log.WarnContext(ctx, "replication slot recreated after an accepted loss; consumers behind the gap get resync_required",
		"slot", r.cfg.Slot, "gap_id", gap.ID, "lost_after", gap.LostAfter, "lsn", lsn, "resume_from", resumeFrom)
	return lsn, nil
}

// NewSlotLostGauge returns the civicbase_cdc_slot_lost gauge of reader for
// registration. A dropped slot has no row in pg_replication_slots, so the
// slot metrics vanish with it, and this gauge is what alerts on it.
func NewSlotLostGauge(reader *Reader) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "civicbase_cdc_slot_lost",
		Help: "1 while replication is stopped because the slot was dropped or invalidated after events were stored from it, until civicbase recreate-slot is run; else 0.",
	}, func() float64 {
		if errors.Is(reader.Status().Err, ErrSlotLost) {
			return 1
		}
		return 0
	})
}

// ResumeBoundary returns the greatest event id that a transaction
// committing before lsn can have. Every event of a slot whose consistent
// point is lsn has a greater id, and every event stored from an earlier
// slot has a smaller or equal one.
func ResumeBoundary(lsn pglogrepl.LSN) string {
	return EventID(lsn-1, ^uint32(0), ^uint8(0))
}

// AcceptSlotLoss is the work of `civicbase recreate-slot`. It checks that
// slot was dropped or invalidated after events were stored from it, records
// the gap as pending and drops the invalidated slot. The service then
// creates a new slot and completes the gap. Run again after a partial
// failure, it returns the same pending gap.
func AcceptSlotLoss(ctx context.Context, pool *pgxpool.Pool, st *store.Store, slot string) (store.Gap, error) {
	var walStatus, database, current string
	var activePID *int32
	err := pool.QueryRow(ctx, `SELECT coalesce(wal_status, ''), coalesce(database, ''), current_database(), active_pid
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&walStatus, &database, &current, &activePID)
	exists := !errors.Is(err, pgx.ErrNoRows)
	if exists && err != nil {
		return store.Gap{}, fmt.Errorf("looking up slot %s: %w", slot, err)
	}
	checkpoint, err := st.Checkpoint(ctx, slot)
	if err != nil {
		return store.Gap{}, err
	}
	newest, err := st.LastEventID(ctx)
	if err != nil {
		return store.Gap{}, err
	}
	loss := lostDropped
	switch {
	case exists && database != current:
		return store.Gap{}, fmt.Errorf("slot %s belongs to database %q, not %q; check DATABASE_URL and the slot name in CIVICBASE_CONFIG",
			slot, database, current)
	case exists && walStatus != "lost":
		return store.Gap{}, fmt.Errorf("slot %s is usable (wal_status %s), so no change was lost and nothing needs to be recreated", slot, walStatus)
	case exists && activePID != nil:
		return store.Gap{}, fmt.Errorf("slot %s is invalidated but server process %d still holds it; run SELECT pg_terminate_backend(%d); and try again",
			slot, *activePID, *activePID)
	case exists:
		loss = lostInvalidated
	case checkpoint == 0 && newest == "":
		return store.Gap{}, fmt.Errorf("slot %s does not exist and no events were stored from it; the service creates it on start, so nothing needs to be recreated", slot)
	}

	// The gap is recorded before the slot is dropped, so that a reader
	// never finds the slot missing without it.
	gap, err := st.AcceptSlotLoss(ctx, slot, loss, checkpoint)
	if err != nil {
		return store.Gap{}, err
	}
	if exists {
		if _, err := pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
			return store.Gap{}, fmt.Errorf("dropping invalidated slot %s: %w", slot, err)
		}
	}
	return gap, nil
}
