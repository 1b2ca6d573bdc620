// Package hub serves the realtime WebSocket endpoint: it authenticates
// sessions, indexes their subscriptions by model, follows the event store and
// fans each stored event out to the subscribed sessions, and replays from the
// store when a subscription resumes with since.
//
// Close codes: 4001 invalid or expired token, 4008 too slow (the reason is
// {"lastId":"<id>"}), 4009 server restarting, 4010 too many subscriptions,
// 4011 not authenticated in time or a message other than authenticate or ping
// before authenticating, 4029 too many failed authenticate or refresh
// attempts from the session's address, 1011 a failed read of the event store
// during a replay. gorilla/websocket closes a session that sends a frame over
// Config.MaxMessageSize with 1009.
//
// A JWT's filter claim and a subscription's filter pin columns per model.
// An event matches when every pinned column has the pinned value in the
// event's changes, or, when changes lacks the column, in its old. A pinned
// column that the event carries in neither fails the match, so a filtered
// session may miss a row that is its own but never gets one it cannot prove
// is its own. Under REPLICA IDENTITY FULL an update carries only the changed
// columns, so an update that leaves a pinned column unchanged does not reach
// filtered sessions. An update that changes a pinned column reaches only the
// sessions pinned to its new value.
//
// A session whose connection has SendBuffer messages outstanding leaves the
// live stream. A catch-up goroutine reads the event store for it at the pace
// the connection takes messages and rejoins the live stream at the hub's
// cursor, as a replay does. So a burst costs no memory beyond one page of
// events and SendBuffer messages per session. Only a session whose
// connection takes no message for Config.StallTimeout is closed with 4008.
//
// A session's messages get their replies in the order they were sent. A
// subscribe with since replays on a goroutine of the session, so the
// session keeps reading frames, and the pongs to its protocol pings,
// meanwhile.
// Messages sent during the replay, a second subscribe or a ping among
// them, are handled after its subscribed reply. An unsubscribe of the
// replaying subscription stops the replay at once: the subscription gets
// no subscribed reply, only the unsubscribed reply, in its turn.
//
// When events are known to be missing (a lost replication slot, or a since
// older than the pruned events), the session gets a resync_required message
// naming the id from which its stream is complete again, never a silent skip.
//
// refresh replaces a session's token without reconnecting. Subscriptions
// that the new token does not allow are removed, each with an error, before
// the refreshed reply. A session whose token's exp passes is closed with
// 4001.
package hub

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/olahol/melody"

	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/internal/authlimit"
	"github.com/civicbase/civicbase/store"
)

// Config sets authentication, limits and the follower's polling of the hub.
type Config struct {
	// AdminToken is accepted as a token that may see every model. Empty
	// disables admin authentication.
	AdminToken config.Secret
	// JWTSecret is the HS256 key of accepted JWTs. Empty rejects every JWT.
	JWTSecret config.Secret
	// Catalog returns the model names and semantic event names that a
	// subscription may name. It is called on every subscribe. Nil accepts
	// every model name and every event name.
	Catalog func(ctx context.Context) (models, semantic []string, err error)
	// SendBuffer is the max number of event messages queued for one session
	// and not yet written to its connection. A session that reaches it falls
	// back to reading the event store at the pace its connection takes
	// messages, so memory stays bounded and no message is lost. Default 256.
	SendBuffer int
	// StallTimeout is how long a session whose SendBuffer is full may go
	// without its connection taking a message before it is closed with 4008.
	// Default 10s.
	StallTimeout time.Duration
	// PongWait is how long a session may go without a pong to the hub's
	// protocol pings before it is closed. A ping goes out every PongWait/2,
	// so a client has PongWait/2 to return its pong, however many messages
	// wait ahead of the ping in its connection. Default 60s.
	PongWait time.Duration
	// MaxSubscriptions is the max number of subscriptions of one session. A
	// subscribe past it gets an error and close code 4010. Default 20.
	MaxSubscriptions int
	// MaxMessageSize is the max size in bytes of a frame from a client.
	// Default 64 KiB; melody's own default of 512 bytes is too small for a
	// subscribe naming a few models.
	MaxMessageSize int64
	// AuthTimeout is how long a session may stay unauthenticated before it
	// is closed with 4011. Default 10s.
	AuthTimeout time.Duration
	// PollInterval is how often the follower reads the event store when no
	// notification arrives, a fallback for lost LISTEN connections.
	// Default 1s.
	PollInterval time.Duration
	// AllowedOrigins lists the browser origins, such as
	// https://app.example.com, whose pages may open a session; "*" allows
	// every origin. Requests without an Origin header come from clients
	// other than browsers, because browsers send one with every WebSocket
	// handshake. They are always allowed, as are origins whose host equals
	// the request's Host. Other origins get 403. Empty allows no others.
	AllowedOrigins []string
	// AuthLimiter limits failed authenticate and refresh attempts per
	// client address. Nil gets a limiter with authlimit's defaults for this
	// hub alone. Share one with the REST API, so that an address blocked on
	// one is blocked on both.
	AuthLimiter *authlimit.Limiter
	// Metrics records sessions and messages when not nil.
	Metrics *Metrics
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.SendBuffer = cmp.Or(c.SendBuffer, 256)
	c.MaxSubscriptions = cmp.Or(c.MaxSubscriptions, 20)
	c.MaxMessageSize = cmp.Or(c.MaxMessageSize, 64<<10)
	c.AuthTimeout = cmp.Or(c.AuthTimeout, 10*time.Second)
	c.PollInterval = cmp.Or(c.PollInterval, time.Second)
	c.StallTimeout = cmp.Or(c.StallTimeout, 10*time.Second)
	c.PongWait = cmp.Or(c.PongWait, 60*time.Second)
	return c
}

// melodyHeadroom is how many messages melody's per-session buffer holds
// beyond SendBuffer and the reply room. The hub never queues more text
// messages than those two, so the room left is for close frames, and melody
// never drops a message.
const melodyHeadroom = 8

// stallCloseMargin is how long past StallTimeout a blocked write waits
// before it fails.
const stallCloseMargin = 10 * time.Second

// replyRoom returns how many replies may be queued beyond SendBuffer. A
// session's messages are handled one at a time, each once fewer than
// SendBuffer messages are outstanding, and one message gets at most
// MaxSubscriptions+1 replies (a refresh that revokes every subscription).
// One more is left for the token_expired error, which a timer queues.
func (c Config) replyRoom() int { return c.MaxSubscriptions + 2 }

const clientKey = "civicbase.client"

// Hub is the realtime WebSocket endpoint. Serve it with ServeHTTP and start
// its follower with Run; Run closes every session when its context ends.
type Hub struct {
	cfg    Config
	store  *store.Store
	pool   *pgxpool.Pool
	log    *slog.Logger
	melody *melody.Melody
	writes *batcher

	// mu guards cursor, index and every subscription change. Fan-out holds
	// it while it sends a page of events and moves the cursor. So a
	// subscription joins the live stream at one exact cursor position, and
	// fan-out sends every event after it.
	mu     sync.Mutex
	cursor string                     // id of the newest event fanned out
	index  map[string]map[*client]int // model → sessions → their subscriptions naming it
	ready  chan struct{}              // closed once the cursor is loaded

	sessionsMu sync.Mutex
	closed     bool
	clients    map[*client]struct{}
	handlers   sync.WaitGroup // one per ServeHTTP call that passed the closed check
	closeOnce  sync.Once
	nextConnID atomic.Int64

	slowClosed atomic.Int64
}

// New returns a Hub reading events from st. pool serves the LISTEN
// connection and the follower's start position. Run or Close must be called
// to release melody's goroutine.
func New(cfg Config, st *store.Store, pool *pgxpool.Pool, log *slog.Logger) *Hub {
	cfg = cfg.WithDefaults()
	if cfg.AuthLimiter == nil {
		cfg.AuthLimiter = authlimit.New(authlimit.Config{}, log.With("component", "hub"))
	}
	h := &Hub{
		cfg: cfg, store: st, pool: pool, log: log.With("component", "hub"),
		index:   make(map[string]map[*client]int),
		ready:   make(chan struct{}),
		clients: make(map[*client]struct{}),
	}
	h.writes = newBatcher(batchLimit)
	m := melody.New()
	m.Config.MaxMessageSize = cfg.MaxMessageSize
	m.Config.MessageBufferSize = cfg.SendBuffer + cfg.replyRoom() + melodyHeadroom
	// A write that outlives melody's WriteWait fails and ends the session's
	// writes, close frame included. The hub must close a stalled session
	// with 4008 first, so the write waits StallTimeout plus a margin in
	// which a client that reads again gets the close frame.
	m.Config.WriteWait = cfg.StallTimeout + stallCloseMargin
	m.Config.PongWait = cfg.PongWait
	m.Config.PingPeriod = cfg.PongWait / 2
	m.Upgrader.CheckOrigin = h.checkOrigin
	m.HandleConnect(h.onConnect)
	m.HandleMessage(h.onMessage)
	m.HandleMessageBinary(h.onBinaryMessage)
	m.HandleSentMessage(h.onSent)
	m.HandleError(h.onError)
	h.melody = m
	return h
}

// ServeHTTP upgrades the request to a WebSocket session and serves it until
// it closes. After Close it responds with 503.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, ok := h.addClient()
	if !ok {
		http.Error(w, "server restarting, reconnect with jitter", http.StatusServiceUnavailable)
		return
	}
	defer h.removeClient(c)

	err := h.melody.HandleRequestWithKeys(hijacker{w, h.writes}, r, map[string]any{clientKey: c})
	if err != nil {
		h.log.DebugContext(r.Context(), "upgrading to websocket failed", "conn_id", c.id, "err", err)
	}
}

// checkOrigin applies Config.AllowedOrigins, so only listed and same-host pages
// can open a session from a browser. Tokens travel in-band, not in
// cookies, so the check limits where a token may be used from.
func (h *Hub) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, allowed := range h.cfg.AllowedOrigins {
		if allowed == "*" || strings.EqualFold(allowed, origin) {
			return true
		}
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	h.log.DebugContext(r.Context(), "rejecting a websocket request from an origin that is not allowed", "origin", origin)
	return false
}

// SlowClosed returns how many sessions were closed with 4008 because they
// did not read their messages fast enough.
func (h *Hub) SlowClosed() int64 { return h.slowClosed.Load() }

// WriteCounts returns how many writes the sessions' connections made and in
// how many system calls they reached the sockets.
func (h *Hub) WriteCounts() (writes, syscalls int64) {
	return h.writes.writes.Load(), h.writes.syscalls.Load()
}

// Close closes every session with 4009, waits until their handlers have
// returned and stops melody and the write batcher. Later calls do nothing.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		h.sessionsMu.Lock()
		h.closed = true
		clients := make([]*client, 0, len(h.clients))
		for c := range h.clients {
			clients = append(clients, c)
		}
		h.sessionsMu.Unlock()

		for _, c := range clients {
			c.close(closeRestarting, "server restarting, reconnect with jitter")
		}
		// Each handler returns within melody's write timeout, because the
		// close frame ends its connection, and close cancels the session's
		// worker, replay and catch-up, which removeClient waits for.
		h.handlers.Wait()
		if err := h.melody.Close(); err != nil {
			h.log.Warn("closing melody failed", "err", err)
		}
		h.writes.stop()
		h.log.Info("hub closed", "sessions", len(clients))
	})
}

func (h *Hub) addClient() (*client, bool) {
	h.sessionsMu.Lock()
	defer h.sessionsMu.Unlock()
	if h.closed {
		return nil, false
	}
	c := newClient(h.nextConnID.Add(1), h.log, h.cfg, &h.slowClosed)
	h.clients[c] = struct{}{}
	h.handlers.Add(1)
	h.cfg.Metrics.addConnections(1)
	return c, true
}

// removeClient runs when the session's handler returns: the connection is
// closed by then. The session's worker may still be adding a subscription,
// so the subscriptions are removed after it returns.
func (h *Hub) removeClient(c *client) {
	c.stop()
	c.waitWorker()
	c.waitCatchUp()
	h.mu.Lock()
	for _, sub := range c.takeSubscriptions() {
		h.unindexLocked(c, sub)
	}
	h.mu.Unlock()

	h.sessionsMu.Lock()
	delete(h.clients, c)
	h.sessionsMu.Unlock()
	h.cfg.Metrics.addConnections(-1)
	h.handlers.Done()
}

func clientOf(s *melody.Session) *client {
	c, _ := s.MustGet(clientKey).(*client)
	return c
}

func (h *Hub) onConnect(s *melody.Session) {
	c := clientOf(s)
	c.attach(s, h.cfg.AuthTimeout)
	h.log.Debug("session connected", "conn_id", c.id)
}

func (h *Hub) onSent(s *melody.Session, _ []byte) {
	h.cfg.Metrics.messageSent()
	clientOf(s).sent()
}

// onError runs on read and write errors. A write error means the connection
// is gone, so the session's context ends and a running replay or catch-up
// stops.
//
// melody also reports ErrWriteClosed and ErrMessageBufferFull from inside
// Session.Write and CloseWithMsg, which the hub calls with the client's lock
// held, so those errors must not take the lock again. The session is closed
// by then, or its handler is about to stop it.
func (h *Hub) onError(s *melody.Session, err error) {
	c := clientOf(s)
	if errors.Is(err, melody.ErrWriteClosed) || errors.Is(err, melody.ErrMessageBufferFull) {
		h.log.Debug("write to a closing session skipped", "conn_id", c.id, "err", err)
		return
	}
	c.cancel()
	h.log.Debug("session ended", "conn_id", c.id, "err", err)
}
