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

	"github.com/jackc/pgerrcode"
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

// errSlotActive means another server process streams the slot. After a
// takeover that is typically the previous leader's, still exiting.
var errSlotActive = errors.New("replication slot active")

// Slot activity retries: while the slot is active in another server
// process, the leader retries every slotActivePoll without a warning for
// slotActiveQuiet, then with the usual backoff and warnings.
const (
	slotActivePoll  = 100 * time.Millisecond
	slotActiveQuiet = 10 * time.Second
)

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
	// readSlot repeats it only now and then.
	lostReport struct {
		msg string
		at  time.Time
	}
}

// Status describes the reader's state for readiness checks.
type Status struct {
	// Role is RoleLeader while this reader holds the slot lock,
	// RoleStandby once it found the lock taken or lost it, and empty
	// before its first attempt to take the lock has finished.
	Role string
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
	r.status = Status{Role: r.status.Role, Streaming: streaming, Err: err, Since: time.Now()}
}

func (r *Reader) setRole(role string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status.Role != role {
		r.status.Role, r.status.Since = role, time.Now()
	}
	r.metrics.setLeader(role == RoleLeader)
}

// Run reads the slot until ctx is canceled. It first takes the slot's
// advisory lock (see LeaderLockKey), standing by while another instance
// holds it, and reads only while the lock connection lives. It reconnects
// with exponential backoff and jitter after connection or server failures.
// It returns nil when ctx ends and an error only for failures that a retry
// cannot fix, such as a slot name taken by another database. A lost slot
// does not end it: it reports the loss and waits for `civicbase
// recreate-slot`.
func (r *Reader) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		started := time.Now()
		err := r.lead(ctx)
		r.setRole(RoleStandby)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrSlotConflict) {
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		msg := "replication stopped; reconnecting"
		if errors.Is(err, errLeadershipLost) {
			msg = "slot lock connection lost; stopped reading the slot, reconnecting"
		}
		r.log.WarnContext(ctx, msg, "slot", r.cfg.Slot, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return nil
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// lead waits for the slot lock, then reads the slot until ctx ends, the
// lock connection fails or a session fails in a way that needs a new lock
// connection too.
func (r *Reader) lead(ctx context.Context) error {
	leadCtx, lock, err := r.acquireLeadership(ctx)
	if err != nil {
		return err
	}
	defer lock.release(ctx)
	err = r.readSlot(leadCtx)
	if ctx.Err() == nil && leadCtx.Err() != nil {
		return context.Cause(leadCtx)
	}
	return err
}

// readSlot runs replication sessions one after another, with backoff, until
// ctx ends or a session fails with a conflicting slot.
func (r *Reader) readSlot(ctx context.Context) error {
	backoff := minBackoff
	var activeSince time.Time
	for {
		started := time.Now()
		err := r.runSession(ctx)
		// Changes held in memory are resent by the server after the
		// reconnect; until then the slot lag metrics show the backlog.
		r.metrics.setOldestPending(time.Time{})
		if ctx.Err() != nil {
			r.setStatus(false, context.Cause(ctx))
			return err
		}
		r.setStatus(false, err)
		if errors.Is(err, ErrSlotConflict) {
			return err
		}
		if errors.Is(err, ErrSlotLost) {
			// The service keeps serving stored events, and /readyz shows
			// err, until an operator accepts the loss.
			r.reportSlotLost(ctx, err)
			if !sleep(ctx, SlotRecheckInterval) {
				return nil
			}
			continue
		}
		// Right after a takeover, the previous leader's server process can
		// hold the slot for a moment while it exits, so retry quickly and
		// quietly for a while.
		if !errors.Is(err, errSlotActive) {
			activeSince = time.Time{}
		} else if activeSince.IsZero() {
			activeSince = time.Now()
		}
		if !activeSince.IsZero() && time.Since(activeSince) < slotActiveQuiet {
			r.log.DebugContext(ctx, "slot still active in another server process; retrying", "slot", r.cfg.Slot, "err", err)
			if !sleep(ctx, slotActivePoll) {
				return nil
			}
			continue
		}
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.WarnContext(ctx, "replication stopped; reconnecting", "slot", r.cfg.Slot, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return nil
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
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
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.ObjectInUse {
		// The slot became active after ensureSlot looked.
		return fmt.Errorf("%w: starting replication on slot %s: %w", errSlotActive, r.cfg.Slot, err)
	}
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
	var plugin, database, current, walStatus, confirmed string
	var activePID *int32
	err = r.pool.QueryRow(ctx, `SELECT coalesce(plugin, ''), coalesce(database, ''), current_database(),
			coalesce(wal_status, ''), active_pid, coalesce(confirmed_flush_lsn, '0/0')::text
		FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.Slot).Scan(&plugin, &database, &current, &walStatus, &activePID, &confirmed)
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
		return 0, fmt.Errorf("%w: slot %s is in use by server process %d although this instance holds the slot lock (advisory lock %d); "+
			"either the previous reader's connection has not ended yet (a dead one ends within wal_sender_timeout) "+
			"or a process that does not take the lock reads the slot, such as another consumer; stop that reader",
			errSlotActive, r.cfg.Slot, *activePID, LeaderLockKey(r.cfg.Slot))
	}
	confirmedLSN, err := pglogrepl.ParseLSN(confirmed)
	if err != nil {
		return 0, fmt.Errorf("parsing confirmed_flush_lsn %q of slot %s: %w", confirmed, r.cfg.Slot, err)
	}
	return r.resumeSlot(ctx, checkpoint, confirmedLSN)
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
