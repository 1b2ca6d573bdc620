// Package authlimit limits failed authentication attempts per client
// address, so that a client cannot guess tokens at the speed of the network.
// The REST API's bearer check and the WebSocket hub's authenticate and
// refresh messages share one Limiter, so an address blocked on one is
// blocked on the other.
//
// Each address has a token bucket (golang.org/x/time/rate): a failed attempt
// takes a token, and an address without one is blocked until the bucket
// refills by one. While blocked, every attempt from the address is rejected
// without checking its token, so a lucky guess gains nothing.
//
// Addresses are the TCP peer's: IPv4 addresses one by one, IPv6 addresses by
// their /64 prefix, which one host usually holds whole. Forwarding headers
// such as X-Forwarded-For are never read, because any client can set them.
// Behind a reverse proxy every client therefore shares the proxy's address,
// and one client's failures block them all.
package authlimit

import (
	"cmp"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config sets the limits. Zero fields take the defaults given.
type Config struct {
	// Burst is how many failed attempts an address may make in a row
	// before it is blocked. Default 10.
	Burst int
	// Interval is the time in which a blocked address earns one more
	// attempt. Default 6s, so a steady guesser gets 10 attempts a minute.
	Interval time.Duration
	// MaxClients is the max number of addresses tracked at once. When it is
	// reached, addresses whose bucket is full are removed first, then any
	// address without an attempt in progress. Default 100,000, about 20 MB.
	MaxClients int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Burst = cmp.Or(c.Burst, 10)
	c.Interval = cmp.Or(c.Interval, 6*time.Second)
	c.MaxClients = cmp.Or(c.MaxClients, 100_000)
	return c
}

// sweepInterval is how often addresses whose bucket has refilled are
// removed.
const sweepInterval = time.Minute

// Limiter tracks failed authentication attempts per address. It is safe for
// concurrent use. A nil *Limiter allows every attempt.
type Limiter struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	clients   map[netip.Prefix]*client
	lastSweep time.Time
}

// client is the state of one address.
type client struct {
	bucket *rate.Limiter
	// pending counts attempts begun and not yet ended. Each may still fail,
	// so Begin counts them as taken, and concurrent guesses cannot exceed
	// the bucket.
	pending int
}

// New returns a Limiter. log receives a warning each time an address gets
// blocked.
func New(cfg Config, log *slog.Logger) *Limiter {
	return &Limiter{cfg: cfg.WithDefaults(), log: log, clients: make(map[netip.Prefix]*client)}
}

// Begin starts an authentication attempt from addr. When addr has no failed
// attempts left, it returns false and the time until it has one, and the
// caller must reject the request without checking its credentials.
// Otherwise the caller checks them and must call End.
func (l *Limiter) Begin(addr netip.Addr) (retryAfter time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	now := time.Now()
	key := keyOf(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepInterval {
		l.sweepLocked(now)
	}
	c := l.clients[key]
	if c == nil {
		l.makeRoomLocked(now)
		c = &client{bucket: rate.NewLimiter(rate.Every(l.cfg.Interval), l.cfg.Burst)}
		l.clients[key] = c
	}
	if missing := 1 + float64(c.pending) - c.bucket.TokensAt(now); missing > 0 {
		return time.Duration(math.Ceil(missing * float64(l.cfg.Interval))), false
	}
	c.pending++
	return 0, true
}

// End ends an attempt that Begin allowed. A failed attempt takes one of the
// address's attempts.
func (l *Limiter) End(addr netip.Addr, success bool) {
	if l == nil {
		return
	}
	now := time.Now()
	key := keyOf(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[key]
	if c == nil {
		return // Begin was not called, or did not allow the attempt
	}
	c.pending = max(c.pending-1, 0)
	if success {
		return
	}
	c.bucket.AllowN(now, 1)
	if c.bucket.TokensAt(now) < 1 && l.log != nil {
		l.log.Warn("blocking authentication from an address after repeated failures",
			"remote_addr", key.String(), "retry_after", l.cfg.Interval)
	}
}

// sweepLocked removes the addresses whose bucket is full again, since they
// carry no information. l.mu must be held.
func (l *Limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	for key, c := range l.clients {
		if c.pending == 0 && c.bucket.TokensAt(now) >= float64(l.cfg.Burst) {
			delete(l.clients, key)
		}
	}
}

// makeRoomLocked removes addresses until there is room for one more. It
// sweeps at most once a second, because a sweep visits every address, and
// otherwise removes any address without an attempt in progress. l.mu must
// be held.
func (l *Limiter) makeRoomLocked(now time.Time) {
	if len(l.clients) < l.cfg.MaxClients {
		return
	}
	if now.Sub(l.lastSweep) >= time.Second {
		l.sweepLocked(now)
	}
	for key, c := range l.clients {
		if len(l.clients) < l.cfg.MaxClients {
			return
		}
		if c.pending == 0 {
			delete(l.clients, key)
		}
	}
}

// Tracked returns the number of addresses tracked.
func (l *Limiter) Tracked() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// keyOf returns the prefix that addr is tracked under: the address itself
// for IPv4 and the /64 for IPv6. An invalid addr maps to the zero Prefix,
// one bucket shared by every request without a usable address.
func keyOf(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		return netip.PrefixFrom(addr, 32)
	case addr.Is6():
		prefix, _ := addr.WithZone("").Prefix(64)
		return prefix
	}
	return netip.Prefix{}
}

// AddrFromRemote returns the IP address of a RemoteAddr such as
// "192.0.2.1:52100" or "[2001:db8::1]:52100", or the zero Addr when it has
// none.
func AddrFromRemote(remoteAddr string) netip.Addr {
	addrPort, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		addr, _ := netip.ParseAddr(remoteAddr)
		return addr
	}
	return addrPort.Addr()
}
