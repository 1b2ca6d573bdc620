package cdc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// Roles of a reader. Only the leader reads the slot. A standby waits on the
// slot's advisory lock and becomes the leader when the lock is released.
const (
	RoleLeader  = "leader"
	RoleStandby = "standby"
)

// Lock connection checks. A connection that the server closes is noticed at
// once, because the watcher is always blocked reading it. A silent network
// failure is noticed by a ping after lockCheckInterval without traffic,
// within lockPingTimeout more.
const (
	lockCheckInterval = 5 * time.Second
	lockPingTimeout   = 10 * time.Second
)

// errLeadershipLost ends a leader's sessions when its lock connection fails.
var errLeadershipLost = errors.New("slot lock connection lost")

// LeaderLockKey returns the key of the session-level advisory lock that the
// reader of slot holds: the FNV-1a 64-bit hash of "civicbase slot " and the
// slot name, as a signed integer. In pg_locks the key appears as classid
// (high 32 bits) and objid (low 32 bits) with objsubid 1.
func LeaderLockKey(slot string) int64 {
	h := fnv.New64a()
	h.Write([]byte("civicbase slot " + slot))
	return int64(h.Sum64())
}

// leaderLock is a held slot lock on its own connection.
type leaderLock struct {
	conn *pgx.Conn
	// watched is closed when the watcher goroutine has returned.
	watched chan struct{}
	cancel  context.CancelCauseFunc
}

// acquireLeadership blocks until this process holds the slot lock or ctx
// ends. The context it returns is canceled, with errLeadershipLost as its
// cause, as soon as the lock connection fails. The caller must read the slot
// only under that context, and call release when done.
func (r *Reader) acquireLeadership(ctx context.Context) (context.Context, *leaderLock, error) {
	conn, err := r.connectLock(ctx)
	if err != nil {
		return nil, nil, err
	}
	key := LeaderLockKey(r.cfg.Slot)
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("taking the lock of slot %s (advisory lock %d): %w", r.cfg.Slot, key, err)
	}
	if !locked {
		r.setRole(RoleStandby)
		waitStart := time.Now()
		r.log.InfoContext(ctx, "standing by: another instance reads the slot; taking over when its lock is released",
			"slot", r.cfg.Slot, "lock_key", key)
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, nil, fmt.Errorf("waiting for the lock of slot %s (advisory lock %d): %w", r.cfg.Slot, key, err)
		}
		r.log.InfoContext(ctx, "slot lock acquired; taking over the slot", "slot", r.cfg.Slot,
			"waited", time.Since(waitStart).Round(time.Millisecond))
	}
	leadCtx, cancel := context.WithCancelCause(ctx)
	l := &leaderLock{conn: conn, watched: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(l.watched)
		if err := watchLock(leadCtx, conn.PgConn()); err != nil {
			cancel(fmt.Errorf("%w: %w", errLeadershipLost, err))
		}
	}()
	r.setRole(RoleLeader)
	return leadCtx, l, nil
}

// connectLock opens the lock connection. The timeouts that a database or
// role may set would end the lock wait or the idle lock session, so they
// are turned off for this session. The keepalive settings make the server
// drop the session, and so release the lock, within about 25 s when the
// client host vanishes without closing the connection.
func (r *Reader) connectLock(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(r.cfg.DatabaseURL.Reveal())
	if err != nil {
		return nil, fmt.Errorf("parsing DATABASE_URL: %w", err)
	}
	for k, v := range map[string]string{
		"application_name": "civicbase", "statement_timeout": "0", "lock_timeout": "0",
		"idle_session_timeout": "0", "idle_in_transaction_session_timeout": "0",
		"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3",
	} {
		cc.RuntimeParams[k] = v
	}
	// Canceling ctx during the lock wait sends a cancel request, so the
	// server stops waiting too instead of taking the lock for a client
	// that is gone.
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 2 * time.Second}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("opening the slot lock connection: %w", err)
	}
	// A standby killed during the lock wait leaves a server process that
	// would otherwise stay queued for the lock until it is granted. The
	// setting exists only where the server can poll sockets for a closed
	// peer (Linux), so a failure to set it is ignored.
	if _, err := conn.Exec(ctx, "SET client_connection_check_interval = '2s'"); err != nil {
		r.log.DebugContext(ctx, "client_connection_check_interval not set on the slot lock connection", "err", err)
	}
	return conn, nil
}

// watchLock blocks reading the idle lock connection until ctx ends, which
// returns nil, or the connection fails, which returns the error. The server
// sends nothing on the connection, so a read returns only on an error or
// when the read deadline passes, and then a ping checks the connection.
func watchLock(ctx context.Context, conn *pgconn.PgConn) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	for {
		if err := conn.Conn().SetReadDeadline(time.Now().Add(lockCheckInterval)); err != nil {
			return fmt.Errorf("setting read deadline: %w", err)
		}
		// Checked after setting the deadline: a cancellation from here on
		// moves the deadline to now, and one before it is seen here.
		if ctx.Err() != nil {
			return nil
		}
		err := conn.WaitForNotification(context.Background())
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			continue // a notification, although the session listens to nothing
		}
		if !pgconn.Timeout(err) {
			return err
		}
		if err := conn.Conn().SetReadDeadline(time.Time{}); err != nil {
			return fmt.Errorf("clearing read deadline: %w", err)
		}
		pingCtx, cancel := context.WithTimeout(ctx, lockPingTimeout)
		err = conn.Ping(pingCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pinging: %w", err)
		}
	}
}

// release stops the watcher and closes the lock connection, which releases
// the lock.
func (l *leaderLock) release(ctx context.Context) {
	l.cancel(nil)
	<-l.watched
	l.conn.Close(context.WithoutCancel(ctx))
}
