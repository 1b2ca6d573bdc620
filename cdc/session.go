package cdc

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/civicbase/civicbase/store"
)

var pgxNoRows = pgx.ErrNoRows

// Idle acknowledgements. While nothing is pending, keepalives show the
// server's position, and the slot may move there once that position is
// stored. Each store is itself WAL that the next keepalive shows, so stores
// happen at most every idleStoreInterval. A move of less than smallIdleMove
// bytes is about what the previous store and PostgreSQL's periodic records
// (running transactions, checkpoints) add, so it waits
// slowIdleStoreInterval, and an idle database gets one small write a minute.
const (
	idleStoreInterval     = 5 * time.Second
	slowIdleStoreInterval = time.Minute
	smallIdleMove         = 8 << 10
)

// session is one replication connection's worth of decoding state. Nothing
// in it survives a reconnect: the server resends from the slot's position.
type session struct {
	r    *Reader
	conn *pgconn.PgConn
	rels *relations
	b    builder

	rc    rowChange // reused for every row change
	tx    txn
	inTxn bool
	// skip marks a transaction whose events the store already has, because
	// it committed before the stored checkpoint.
	skip       bool
	checkpoint pglogrepl.LSN

	batch []store.Event
	// batchOldest is the commit time of the first change in batch.
	// jobOldest holds the same for each job handed to the writer and not
	// yet collected, in order. The zero time marks a job without events.
	batchOldest time.Time
	jobOldest   []time.Time
	w           *writer
	// committed is the end LSN of the last source transaction whose events
	// are all in batch, handed to the writer, or in the store.
	committed pglogrepl.LSN
	// submitted is the checkpoint of the last batch handed to the writer.
	submitted pglogrepl.LSN
	// durable is the position reported to the slot as flushed. It moves
	// only to positions the writer has stored.
	durable pglogrepl.LSN
	// idleTarget is a server position that a keepalive showed while
	// nothing was pending, to be stored and then acknowledged, and
	// idleStoredAt is when the last one was handed to the writer.
	idleTarget   pglogrepl.LSN
	idleStoredAt time.Time
	flushAt      time.Time
	nextStatus   time.Time
	readDeadline time.Time

	// Stall watchdog state. serverWAL is the highest server position seen
	// in keepalives and WAL data. progressed is set when a message arrives
	// or a write finishes, and tick moves lastProgress to that time. pinged
	// records that a reply was requested during the current silence.
	serverWAL    pglogrepl.LSN
	progressed   bool
	lastProgress time.Time
	pinged       bool
}

func newSession(r *Reader, conn *pgconn.PgConn, checkpoint pglogrepl.LSN) *session {
	durable := max(checkpoint, r.DurableLSN())
	return &session{
		r: r, conn: conn, rels: newRelations(r.pool, r.types, r.cfg, r.log), b: builder{log: r.log},
		checkpoint: checkpoint, committed: durable, durable: durable, submitted: durable,
		batch: make([]store.Event, 0, r.cfg.BatchSize),
	}
}

// stream receives until an error or ctx ends. Each receive waits at most
// until the next standby status update or the next batch flush is due.
func (s *session) stream(ctx context.Context) error {
	s.nextStatus = time.Now().Add(s.r.cfg.StatusInterval)
	s.lastProgress = time.Now()
	s.w = startWriter(ctx, s.r.store)
	defer s.w.close()
	stopWake := context.AfterFunc(ctx, func() { _ = s.conn.Conn().SetReadDeadline(time.Now()) })
	defer stopWake()
	for {
		if err := s.collect(ctx, false); err != nil {
			return err
		}
		if s.w.inflight == 0 && !s.flushAt.IsZero() {
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
		if err := s.tick(ctx); err != nil {
			return err
		}
		deadline := s.nextStatus
		if !s.flushAt.IsZero() && s.flushAt.Before(deadline) {
			deadline = s.flushAt
		}
		if watch := s.watchdogDeadline(time.Now()); !watch.IsZero() && watch.Before(deadline) {
			deadline = watch
		}
		if due := s.idleStoreDue(); !due.IsZero() && due.Before(deadline) {
			deadline = due
		}
		if s.w.inflight > 0 {
			// A finished write cannot interrupt the receive, so poll for it.
			// Whole milliseconds keep the deadline from changing per message.
			if poll := time.Now().Add(2 * time.Millisecond).Truncate(time.Millisecond); poll.Before(deadline) {
				deadline = poll
			}
		}
		msg, err := s.receive(ctx, deadline)
		if err == nil {
			s.progressed = true
		}
		if err != nil {
			if ctx.Err() != nil {
				return s.drain(ctx)
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receiving from slot %s: %w", s.r.cfg.Slot, err)
		}
		if err := s.handle(ctx, msg); err != nil {
			return err
		}
	}
}

// receive waits for the next message until deadline. It sets the deadline
// on the socket rather than passing a context to pgconn, because a context
// per message costs a watcher registration each time, which at 200,000
// messages per second was a fifth of the reader's CPU. Cancellation of ctx
// reaches a blocked read through the AfterFunc set up in stream.
func (s *session) receive(ctx context.Context, deadline time.Time) (pgproto3.BackendMessage, error) {
	if !deadline.Equal(s.readDeadline) {
		if err := s.conn.Conn().SetReadDeadline(deadline); err != nil {
			return nil, fmt.Errorf("setting read deadline: %w", err)
		}
		s.readDeadline = deadline
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.conn.ReceiveMessage(context.Background())
}

// tick runs the timed duties: it flushes a waiting batch, stores a waiting
// idle position, runs the stall watchdog and sends the periodic status
// update. When idle, that update requests a keepalive, so the slot can
// advance past WAL that contains no watched changes.
func (s *session) tick(ctx context.Context) error {
	now := time.Now()
	if !s.flushAt.IsZero() && !now.Before(s.flushAt) {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	if err := s.storeIdle(ctx, now, false); err != nil {
		return err
	}
	if err := s.watchdog(ctx, now); err != nil {
		return err
	}
	if now.Before(s.nextStatus) {
		return nil
	}
	return s.sendStatus(ctx, s.idle())
}

func (s *session) idle() bool {
	return !s.inTxn && len(s.batch) == 0 && s.w.inflight == 0 && s.committed <= s.durable
}

// storeIdle hands idleTarget to the writer as a checkpoint without events
// once idleStoreDue has passed, or at once when urgent. collect sends it to
// the slot after the write.
func (s *session) storeIdle(ctx context.Context, now time.Time, urgent bool) error {
	due := s.idleStoreDue()
	if due.IsZero() || (!urgent && now.Before(due)) {
		return nil
	}
	s.committed = s.idleTarget
	s.idleStoredAt = now
	return s.flush(ctx)
}

// idleStoreDue returns when idleTarget may be stored, or the zero time when
// no store is waiting.
func (s *session) idleStoreDue() time.Time {
	if !s.idle() || s.idleTarget <= s.committed {
		return time.Time{}
	}
	wait := idleStoreInterval
	if s.idleTarget-s.durable < smallIdleMove {
		wait = slowIdleStoreInterval
	}
	return s.idleStoredAt.Add(wait)
}

func (s *session) sendStatus(ctx context.Context, replyRequested bool) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.durable, WALFlushPosition: s.durable, WALApplyPosition: s.durable,
		ReplyRequested: replyRequested,
	})
	if err != nil {
		return fmt.Errorf("sending standby status at %s: %w", s.durable, err)
	}
	s.r.durable.Store(uint64(s.durable))
	s.r.metrics.setStored(s.durable)
	s.nextStatus = time.Now().Add(s.r.cfg.StatusInterval)
	return nil
}

func (s *session) handle(ctx context.Context, msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.CopyData:
		return s.handleCopyData(ctx, m.Data)
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("server error on slot %s: %w", s.r.cfg.Slot, pgconn.ErrorResponseToPgError(m))
	case *pgproto3.CopyDone:
		return fmt.Errorf("server ended the replication stream on slot %s", s.r.cfg.Slot)
	}
	return nil
}

func (s *session) handleCopyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parsing keepalive: %w", err)
		}
		s.serverWAL = max(s.serverWAL, ka.ServerWALEnd)
		// Everything before the server's position has reached us, so when
		// nothing is pending the slot may move there once the position is
		// stored. This keeps an idle or unwatched-only database from
		// pinning WAL.
		if s.idle() && ka.ServerWALEnd > s.durable {
			s.idleTarget = max(s.idleTarget, ka.ServerWALEnd)
		}
		// A server shutting down requests replies until the slot reaches
		// its position, so that store is not throttled. It fails, because
		// the server has ended the other sessions by then, and the session
		// ends, which lets the server finish.
		if err := s.storeIdle(ctx, time.Now(), ka.ReplyRequested); err != nil {
			return err
		}
		if ka.ReplyRequested {
			return s.sendStatus(ctx, false)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parsing XLogData: %w", err)
		}
		s.serverWAL = max(s.serverWAL, xld.ServerWALEnd)
		return s.handleWAL(ctx, xld)
	}
	return nil
}

func (s *session) handleWAL(ctx context.Context, xld pglogrepl.XLogData) error {
	if len(xld.WALData) > 0 {
		switch xld.WALData[0] {
		case 'I', 'U', 'D':
			if err := decodeRowChange(xld.WALData, &s.rc); err != nil {
				return fmt.Errorf("decoding pgoutput message at %s: %w", xld.WALStart, err)
			}
			return s.handleChange(ctx, &s.rc)
		}
	}
	msg, err := parseMessage(xld.WALData)
	if err != nil {
		return fmt.Errorf("decoding pgoutput message at %s: %w", xld.WALStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		return s.rels.update(ctx, m)
	case *pglogrepl.BeginMessage:
		s.tx = txn{commitLSN: m.FinalLSN, commitTime: m.CommitTime, xid: m.Xid}
		s.inTxn = true
		s.skip = m.FinalLSN < s.checkpoint
	case *pglogrepl.CommitMessage:
		s.inTxn = false
		s.committed = max(s.committed, m.TransactionEndLSN)
		// With the writer idle, store at once for the lowest latency. While
		// it is busy, commits gather into the next batch, which is flushed
		// when the write ends or flushDelay passes.
		if s.w.inflight == 0 {
			return s.flush(ctx)
		}
		if s.flushAt.IsZero() {
			s.flushAt = time.Now().Add(flushDelay)
		}
	case *pglogrepl.TruncateMessage:
		return s.handleChange(ctx, m)
	}
	return nil
}

// handleChange takes a *rowChange or a *pglogrepl.TruncateMessage.
func (s *session) handleChange(ctx context.Context, msg any) error {
	if s.skip {
		s.tx.seq++
		return nil
	}
	changes, err := s.decode(msg)
	if err != nil {
		return fmt.Errorf("decoding change %d of transaction %d (commit %s): %w", s.tx.seq, s.tx.xid, s.tx.commitLSN, err)
	}
	if len(s.batch) == 0 && len(changes) > 0 {
		s.batchOldest = s.tx.commitTime
		s.updateLag()
	}
	for _, c := range changes {
		added := s.b.events(c, &s.tx)
		s.batch = append(s.batch, added...)
		s.r.metrics.addChange(c.rel.table, c.op, added)
	}
	if len(s.batch) >= s.r.cfg.BatchSize {
		return s.flush(ctx)
	}
	return nil
}

func (s *session) decode(msg any) ([]*change, error) {
	switch m := msg.(type) {
	case *rowChange:
		rel, err := s.rels.get(m.relationID)
		if err != nil {
			return nil, err
		}
		s.b.vals = s.b.vals[:0]
		var c *change
		switch m.op {
		case 'I':
			c, err = s.b.insert(rel, m.new)
		case 'U':
			c, err = s.b.update(rel, m)
		default:
			c, err = s.b.delete(rel, m)
		}
		if err != nil {
			return nil, err
		}
		return []*change{c}, nil
	case *pglogrepl.TruncateMessage:
		out := make([]*change, 0, len(m.RelationIDs))
		for _, id := range m.RelationIDs {
			rel, err := s.rels.get(id)
			if err != nil {
				return nil, err
			}
			out = append(out, truncateChange(rel))
		}
		return out, nil
	}
	return nil, nil
}

// flush hands the batch and the checkpoint to the writer, which stores
// them in one store transaction. Events of a transaction still in progress
// may be in the batch. The checkpoint stays at the last complete
// transaction, so a crash replays the rest under the same ids.
func (s *session) flush(ctx context.Context) error {
	s.flushAt = time.Time{}
	if len(s.batch) == 0 && s.committed <= s.submitted {
		return nil
	}
	for s.w.inflight >= maxInflight {
		if err := s.collect(ctx, true); err != nil {
			return err
		}
	}
	job := writeJob{events: s.batch}
	if s.committed > s.submitted {
		job.cp = &store.Checkpoint{Slot: s.r.cfg.Slot, LSN: s.committed}
		s.submitted = s.committed
	}
	s.w.queue <- job
	s.w.inflight++
	s.jobOldest = append(s.jobOldest, s.batchOldest)
	s.batchOldest = time.Time{}
	s.batch = make([]store.Event, 0, s.r.cfg.BatchSize)
	return nil
}

// updateLag sets the lag metric to the commit time of the oldest change
// that is batched or being written. Commit times follow commit order, up to
// clock steps on the server, so the first job with events has the oldest.
func (s *session) updateLag() {
	for _, t := range s.jobOldest {
		if !t.IsZero() {
			s.r.metrics.setOldestPending(t)
			return
		}
	}
	s.r.metrics.setOldestPending(s.batchOldest)
}

// collect takes finished writes and reports the position they made durable.
// With wait set it blocks for at least one.
func (s *session) collect(ctx context.Context, wait bool) error {
	for s.w.inflight > 0 {
		var res writeResult
		if wait {
			res = <-s.w.results
			wait = false
		} else {
			select {
			case res = <-s.w.results:
			default:
				return nil
			}
		}
		s.w.inflight--
		s.jobOldest = s.jobOldest[1:]
		s.updateLag()
		if res.err != nil {
			return res.err
		}
		s.progressed = true
		if res.lsn > s.durable {
			s.durable = res.lsn
			if err := s.sendStatus(ctx, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// drain runs when ctx ends: it stores what is batched and reports the final
// durable position, so a restart does not redo that work. It reads nothing
// more from the slot, and it is bounded by the configured shutdown timeout.
func (s *session) drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(s.r.cfg.ShutdownTimeout, 10*time.Second))
	defer cancel()
	if err := s.flush(ctx); err != nil {
		return fmt.Errorf("flushing at shutdown: %w", err)
	}
	for s.w.inflight > 0 {
		if err := s.collect(ctx, true); err != nil {
			return fmt.Errorf("flushing at shutdown: %w", err)
		}
	}
	if err := s.sendStatus(ctx, false); err != nil {
		return err
	}
	s.r.log.InfoContext(ctx, "replication stopped", "slot", s.r.cfg.Slot, "lsn", s.durable)
	return nil
}
