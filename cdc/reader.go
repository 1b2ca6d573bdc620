package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/store"
)

// flushDelay is how long committed events may wait in memory, while a store
// write is in flight, for more transactions to share the next store
// transaction. Commits under load then cost one store commit per batch.
const flushDelay = 5 * time.Millisecond

// Reconnect backoff bounds. A restart of Postgres typically takes a few
// seconds, so the first retries come quickly.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// ErrSlotLost means the replication slot was dropped or invalidated after
// events were stored from it. Changes in the gap cannot be recovered from
// the slot, so the reader waits for an operator to accept the gap with
// `civicbase recreate-slot` instead of creating a new slot silently.
var ErrSlotLost = errors.New("replication slot lost")

// ErrSlotConflict means the configured slot name is taken by a slot that
// this service cannot use. A retry would meet the same slot, so the reader
// stops.
var ErrSlotConflict = errors.New("replication slot name taken")

// Reader streams one replication slot into the store. Create it with
// NewReader and call Run once.
type Reader struct {
	cfg   config.Config
	pool  *pgxpool.Pool
	store *store.Store
	types *TypeMap
	log   *slog.Logger
	// metrics is nil unless SetMetrics was called.
	metrics *Metrics

	mu     sync.Mutex
	status Status

	// durable is the LSN last reported to the slot as flushed.
	durable atomic.Uint64

	// lostReport is the lost-slot error last logged and when, so that
	// Run repeats it only now and then.
	lostReport struct {
		msg string
		at  time.Time
	}
}

// Status describes the reader's state for readiness checks.
type Status struct {
	// Streaming is true while a replication session is running.
	Streaming bool
	// Err is the last error that ended a session, if any.
	Err error
	// Since is when the state last changed.
	Since time.Time
}

// NewReader returns a reader for the slot and publication in cfg. pool must
// reach the same database as cfg.DatabaseURL.
func NewReader(cfg config.Config, pool *pgxpool.Pool, st *store.Store, log *slog.Logger) *Reader {
	return &Reader{cfg: cfg, pool: pool, store: st, types: NewTypeMap(pool), log: log,
		status: Status{Since: time.Now()}}
}

// SetMetrics makes the reader record into m. Call it before Run.
func (r *Reader) SetMetrics(m *Metrics) { r.metrics = m }

// Status returns the reader's current state.
func (r *Reader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// DurableLSN returns the position last acknowledged to the slot.
func (r *Reader) DurableLSN() pglogrepl.LSN { return pglogrepl.LSN(r.durable.Load()) }

func (r *Reader) setStatus(streaming bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = Status{Streaming: streaming, Err: err, Since: time.Now()}
}

// Run streams until ctx is canceled, reconnecting with exponential backoff
// and jitter after connection or server failures. It returns nil when ctx
// ends and an error only for failures that a retry cannot fix, such as a
// slot name taken by another database. A lost slot does not end it: it
// reports the loss and waits for `civicbase recreate-slot`.
func (r *Reader) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		started := time.Now()
		err := r.runSession(ctx)
		// Changes held in memory are resent by the server after the
		// reconnect; until then the slot lag metrics show the backlog.
		r.metrics.setOldestPending(time.Time{})
		r.setStatus(false, err)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrSlotConflict) {
			return err
		}
		if errors.Is(err, ErrSlotLost) {
			// The service keeps serving stored events, and /readyz shows
			// err, until an operator accepts the loss.
			r.reportSlotLost(ctx, err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(SlotRecheckInterval):
			}
			continue
		}
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.WarnContext(ctx, "replication stopped; reconnecting", "slot", r.cfg.Slot, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (r *Reader) runSession(ctx context.Context) error {
	conn, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	checkpoint, err := r.ensureSlot(ctx, conn)
	if err != nil {
		return err
	}
	// Configured tables are looked up by OID before streaming starts, so a
	// rename right after start-up still finds its configuration.
	s := newSession(r, conn, checkpoint)
	if err := s.rels.resolve(ctx); err != nil {
		return err
	}
	err = pglogrepl.StartReplication(ctx, conn, r.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", r.cfg.Publication)},
	})
	if err != nil {
		return fmt.Errorf("starting replication on slot %s: %w", r.cfg.Slot, err)
	}
	r.setStatus(true, nil)
	r.log.InfoContext(ctx, "replication started", "slot", r.cfg.Slot, "publication", r.cfg.Publication, "lsn", checkpoint)
	return s.stream(ctx)
}

// connect opens a replication connection. The session settings pin the text
// forms that pgoutput writes, which type mapping relies on.
func (r *Reader) connect(ctx context.Context) (*pgconn.PgConn, error) {
	pc, err := pgconn.ParseConfig(r.cfg.DatabaseURL.Reveal())
	if err != nil {
		return nil, fmt.Errorf("parsing DATABASE_URL: %w", err)
	}
	for k, v := range map[string]string{
		"replication": "database", "application_name": "civicbase", "DateStyle": "ISO, MDY",
		"IntervalStyle": "postgres", "TimeZone": "UTC", "extra_float_digits": "1", "bytea_output": "hex",
	} {
		pc.RuntimeParams[k] = v
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("opening replication connection: %w", err)
	}
	return conn, nil
}

// ensureSlot creates the slot on first start and otherwise checks that it is
// usable. It returns the position to stream from: the store's checkpoint
// for the slot, or a new slot's consistent point.
func (r *Reader) ensureSlot(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	checkpoint, err := r.store.Checkpoint(ctx, r.cfg.Slot)
	if err != nil {
		return 0, err
	}
	var plugin, database, current, walStatus string
	var activePID *int32
	err = r.pool.QueryRow(ctx, `SELECT coalesce(plugin, ''), coalesce(database, ''), current_database(),
			coalesce(wal_status, ''), active_pid
		FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.Slot).Scan(&plugin, &database, &current, &walStatus, &activePID)
	switch {
	case errors.Is(err, pgxNoRows):
		return r.missingSlot(ctx, conn, checkpoint)
	case err != nil:
		return 0, fmt.Errorf("looking up slot %s: %w", r.cfg.Slot, err)
	case walStatus == "lost":
		return 0, r.slotLostError(ctx, lostInvalidated, checkpoint)
	case database != current:
		// Slot names are unique per server, not per database.
		return 0, fmt.Errorf("%w: slot %s belongs to database %q, not %q; set another slot name (slot: in CIVICBASE_CONFIG) for this database",
			ErrSlotConflict, r.cfg.Slot, database, current)
	case plugin != "pgoutput":
		return 0, fmt.Errorf("%w: slot %s uses plugin %q, not pgoutput; drop it or set another slot name", ErrSlotConflict, r.cfg.Slot, plugin)
	case activePID != nil:
		return 0, fmt.Errorf("slot %s is in use by server process %d; only one reader may stream a slot", r.cfg.Slot, *activePID)
	}
	return r.resumePendingGap(ctx, checkpoint)
}

func (r *Reader) createSlot(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, r.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil {
		return 0, fmt.Errorf("creating replication slot %s: %w", r.cfg.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("parsing consistent point %q of slot %s: %w", res.ConsistentPoint, r.cfg.Slot, err)
	}
	// The checkpoint row marks that the slot existed, so that a later drop
	// is detected instead of papered over with a new slot.
	if err := r.store.Write(ctx, nil, &store.Checkpoint{Slot: r.cfg.Slot, LSN: lsn}); err != nil {
		return 0, err
	}
	r.log.InfoContext(ctx, "replication slot created", "slot", r.cfg.Slot, "lsn", lsn)
	return lsn, nil
}
