package hub

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/olahol/melody"

	"github.com/civicbase/civicbase/canon"
)

// Close codes sent to clients.
const (
	closeInvalidToken     = 4001 // also when the token expires
	closeTooSlow          = 4008
	closeRestarting       = 4009
	closeTooManySubs      = 4010
	closeNotAuthenticated = 4011
	closeInvalidPayload   = 1007
	closePolicyViolation  = 1008
	closeInternalError    = 1011
)

// client is the hub's state of one WebSocket session.
type client struct {
	id         int64
	log        *slog.Logger
	sendBuffer int
	// replyRoom is how many replies may be queued beyond sendBuffer, so a
	// ping or subscribe of a session whose buffer is full waits on the read
	// loop instead of closing the session.
	replyRoom    int
	stallTimeout time.Duration
	slowClosed   *atomic.Int64
	metrics      *Metrics
	// ctx ends when the session is gone or going, and done is its Done
	// channel.
	ctx  context.Context
	end  context.CancelFunc
	done <-chan struct{}
	// pendingLimit is the max number of messages waiting for the worker.
	pendingLimit int

	mu        sync.Mutex
	session   *melody.Session
	authTimer *time.Timer
	grant     *grant // nil until authenticated
	// expiryTimer closes the session when its token expires. grantVersion
	// counts grant changes, so a timer that fires after a refresh does
	// nothing.
	expiryTimer  *time.Timer
	grantVersion uint64
	subs         map[string]*subscription
	// closing is set once a close frame is queued; nothing is queued after it.
	closing      bool
	pendingClose []byte // close frame queued before the session was attached
	stopped      bool
	stopReplay   context.CancelFunc // cancels the running replay's or catch-up's queries
	// outstanding counts text messages queued to melody and not yet written.
	outstanding int
	// written, when not nil, is closed by the next write of a message, so
	// that waiters for room in the buffer wake up.
	written chan struct{}
	// replaying is set while a replay or a catch-up reads the store for the
	// session. Fan-out skips the session meanwhile, because the reader
	// queues every event for all its subscriptions until it reaches the
	// hub's cursor.
	replaying bool
	// catchUp is the running catch-up goroutine's run, nil when none runs.
	catchUp *catchUp
	// replaySub is the subscription whose replay runs, nil when none runs.
	replaySub *subscription
	// working is set while the session's worker goroutine handles its
	// messages, and workerDone is closed when the worker returns. pending
	// holds the messages that wait for the worker, in the order they
	// arrived.
	working    bool
	workerDone chan struct{}
	pending    []inbound
	// servedUpTo is the id up to which every event was queued or skipped, so
	// fan-out skips ids at or below it. A replay or catch-up moves it with
	// each event it reads after the session's live position.
	servedUpTo string
	// resumeID is an id from which a subscribe with since, for every current
	// subscription, loses nothing: the last event queued, or the start of a
	// subscription when nothing was queued since. It goes in the 4008 reason.
	resumeID string
}

func newClient(id int64, log *slog.Logger, cfg Config, slowClosed *atomic.Int64) *client {
	ctx, end := context.WithCancel(context.Background())
	return &client{
		id: id, log: log, sendBuffer: cfg.SendBuffer, replyRoom: cfg.replyRoom(),
		stallTimeout: cfg.StallTimeout, slowClosed: slowClosed, metrics: cfg.Metrics,
		ctx: ctx, end: end, done: ctx.Done(), pendingLimit: cfg.pendingLimit(),
		subs: make(map[string]*subscription),
	}
}

// attach binds the melody session and starts the authentication timer.
func (c *client) attach(s *melody.Session, authTimeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.session = s
	if c.pendingClose != nil {
		_ = s.CloseWithMsg(c.pendingClose)
		return
	}
	c.authTimer = time.AfterFunc(authTimeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.grant == nil {
			c.closeLocked(closeNotAuthenticated, "not authenticated in time")
		}
	})
}

// sent runs after melody wrote a text message to the connection.
func (c *client) sent() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outstanding--
	if c.written != nil {
		close(c.written)
		c.written = nil
	}
}

// writtenLocked returns a channel that the next write of a message closes.
func (c *client) writtenLocked() <-chan struct{} {
	if c.written == nil {
		c.written = make(chan struct{})
	}
	return c.written
}

// cancel stops a running replay; the session is gone or going.
func (c *client) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelLocked()
}

func (c *client) cancelLocked() {
	c.end()
	c.stopped = true
	if c.stopReplay != nil {
		c.stopReplay()
	}
}

// stop releases the session's timers and replay when its handler returns.
func (c *client) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelLocked()
	if c.authTimer != nil {
		c.authTimer.Stop()
	}
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
}

func (c *client) close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(code, reason)
}

// closeLocked queues a close frame after the messages already queued, so the
// client receives those first.
func (c *client) closeLocked(code int, reason string) {
	if c.closing {
		return
	}
	c.closing = true
	c.cancelLocked()
	msg := melody.FormatCloseMessage(code, reason)
	if c.session == nil {
		c.pendingClose = msg
		return
	}
	_ = c.session.CloseWithMsg(msg)
}

// enqueueLocked queues msg, or closes the session with 4008 when the buffer
// is full: SendBuffer messages for an event, SendBuffer plus the reply room
// for a reply. id is the event's id, or empty for a reply. Callers that
// queue events wait for room first, so the close is a last resort.
func (c *client) enqueueLocked(msg []byte, id string) bool {
	if c.closing || c.session == nil {
		return false
	}
	limit := c.sendBuffer
	if id == "" {
		limit += c.replyRoom
	}
	if c.outstanding >= limit {
		c.closeSlowLocked()
		return false
	}
	if err := c.session.Write(msg); err != nil {
		return false
	}
	c.outstanding++
	if id != "" {
		c.resumeID = id
	}
	return true
}

func (c *client) closeSlowLocked() {
	if c.closing {
		return
	}
	c.slowClosed.Add(1)
	c.metrics.slowClosed()
	c.log.Warn("closing a session that reads too slowly", "conn_id", c.id, "last_id", c.resumeID, "queued", c.outstanding)
	c.closeLocked(closeTooSlow, slowReason(c.resumeID))
}

// slowReason is the 4008 close reason, {"lastId":"<id>"}. Resubscribing
// with since set to that id loses nothing. Event ids are 30 bytes, well
// within the 123-byte limit of a close reason.
func slowReason(resumeID string) string {
	b := append([]byte(`{"lastId":`), canon.AppendString(nil, resumeID)...)
	return string(append(b, '}'))
}

func (c *client) send(msg []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enqueueLocked(msg, "")
}

func (c *client) sendError(code, message, subID string) {
	c.send(errorMessage(code, message, subID))
}

// waitForWrite waits until written is closed. A session whose connection
// takes no message until stall fires is closed with 4008. It reports false
// when the session is closing.
func (c *client) waitForWrite(written <-chan struct{}, stall *time.Timer) bool {
	select {
	case <-written:
		return true
	case <-c.done:
		return false
	case <-stall.C:
		c.mu.Lock()
		c.closeSlowLocked()
		c.mu.Unlock()
		return false
	}
}

// waitForRoom waits until fewer than SendBuffer messages are outstanding,
// and reports false when the session is closing or stalls.
func (c *client) waitForRoom() bool {
	return c.waitFor(func() bool { return c.outstanding < c.sendBuffer })
}

// waitFor calls offerLocked, with c.mu held, until it reports true, and
// waits for a write of a message before each retry. offerLocked is called
// only while the session is open. waitFor reports false when the session
// is closing, or when its connection takes no message for StallTimeout,
// which closes it with 4008.
func (c *client) waitFor(offerLocked func() bool) bool {
	var stall *time.Timer
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if c.closing || c.stopped {
			c.mu.Unlock()
			return false
		}
		if offerLocked() {
			c.mu.Unlock()
			return true
		}
		written := c.writtenLocked()
		c.mu.Unlock()

		if stall == nil {
			stall = time.NewTimer(c.stallTimeout)
		}
		if !c.waitForWrite(written, stall) {
			return false
		}
		// The connection took a message, so the stall is measured anew: a
		// catch-up may take the room again before this waiter gets it.
		stall.Reset(c.stallTimeout)
	}
}
