package delivery

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/civicbase/civicbase/store"
)

// DefaultSchedule is the wait before each retry: about 5 s, 30 s, 2 min,
// 10 min, 30 min, 1 h, 3 h, 6 h, 12 h and 24 h. After the last retry fails
// the delivery is dead.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// Config tunes the dispatcher. The zero value of each field means its
// default.
type Config struct {
	// Workers is the most deliveries in flight in this process. Default 64.
	Workers int
	// PerEndpoint is the most deliveries in flight to one endpoint from this
	// process, so one slow endpoint cannot take every worker. Default 16.
	PerEndpoint int
	// ClaimBatch is the most deliveries claimed per query. Default 256.
	ClaimBatch int
	// ConnectTimeout bounds connecting to an endpoint. Default 5s.
	ConnectTimeout time.Duration
	// Timeout bounds a whole attempt, response included. Default 10s.
	Timeout time.Duration
	// Lease is how long a claim lasts before another worker may take the
	// delivery, which happens only when this process died. It must exceed
	// Timeout. Default 60s.
	Lease time.Duration
	// Schedule is the wait before each retry. Default DefaultSchedule.
	Schedule []time.Duration
	// DisableAfter disables an endpoint whose deliveries have all failed for
	// this long. Default 120h (5 days).
	DisableAfter time.Duration
	// PollInterval is how often to look for due deliveries when no write in
	// this process wakes the dispatcher: retries coming due, and events
	// stored by another instance. Default 500ms.
	PollInterval time.Duration
	// AllowPrivate allows endpoints on loopback and private addresses, for
	// development (CIVICBASE_DEV=true).
	AllowPrivate bool
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Workers = cmp.Or(c.Workers, 64)
	c.PerEndpoint = cmp.Or(c.PerEndpoint, 16)
	c.ClaimBatch = cmp.Or(c.ClaimBatch, 256)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, 5*time.Second)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.Lease = cmp.Or(c.Lease, 60*time.Second)
	c.DisableAfter = cmp.Or(c.DisableAfter, 120*time.Hour)
	c.PollInterval = cmp.Or(c.PollInterval, 500*time.Millisecond)
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule
	}
	return c
}

// Dispatcher claims due deliveries and sends them. Every instance runs one;
// they share the queue through row locks.
type Dispatcher struct {
	cfg    Config
	store  *store.Store
	client *http.Client
	hooks  *hookCache
	log    *slog.Logger

	slots    chan struct{} // one token per free worker
	mu       sync.Mutex
	endpoint map[string]chan struct{} // per-endpoint tokens
	results  chan store.Result
}

// NewDispatcher returns a dispatcher on st. cipher opens stored secrets and
// may be nil when secrets are not encrypted.
func NewDispatcher(cfg Config, st *store.Store, cipher *Cipher, log *slog.Logger) *Dispatcher {
	cfg = cfg.WithDefaults()
	d := &Dispatcher{
		cfg: cfg, store: st, log: log,
		client:   NewHTTPClient(Guard{AllowPrivate: cfg.AllowPrivate}, cfg.ConnectTimeout, cfg.Timeout),
		hooks:    newHookCache(st, cipher),
		slots:    make(chan struct{}, cfg.Workers),
		endpoint: map[string]chan struct{}{},
		results:  make(chan store.Result, cfg.Workers),
	}
	for range cfg.Workers {
		d.slots <- struct{}{}
	}
	return d
}

// Run sends deliveries until ctx ends, then waits for attempts in flight
// and records their results before it returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.record(context.WithoutCancel(ctx))
	}()
	var sends sync.WaitGroup
	d.claimLoop(ctx, &sends)
	sends.Wait()
	close(d.results)
	<-recorded
	return nil
}

func (d *Dispatcher) claimLoop(ctx context.Context, sends *sync.WaitGroup) {
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		written := d.store.Written()
		n := d.claimAndSend(ctx, sends)
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-written:
		case <-poll.C:
		}
	}
}

// claimAndSend claims as many deliveries as there are free workers and
// starts sending them. It returns how many it claimed.
func (d *Dispatcher) claimAndSend(ctx context.Context, sends *sync.WaitGroup) int {
	free := d.acquireSlots(ctx)
	if free == 0 {
		return 0
	}
	claimed, err := d.store.Claim(ctx, free, d.cfg.Lease)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "claiming deliveries failed; retrying", "err", err)
			sleep(ctx, time.Second)
		}
		claimed = nil
	}
	for range free - len(claimed) {
		d.slots <- struct{}{}
	}
	for _, c := range claimed {
		sends.Add(1)
		go func() {
			defer sends.Done()
			defer func() { d.slots <- struct{}{} }()
			d.results <- d.attempt(ctx, c)
		}()
	}
	return len(claimed)
}

// acquireSlots takes at least one free worker token, waiting for one, and
// then every other free token, up to ClaimBatch.
func (d *Dispatcher) acquireSlots(ctx context.Context) int {
	select {
	case <-d.slots:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < d.cfg.ClaimBatch {
		select {
		case <-d.slots:
			n++
		default:
			return n
		}
	}
	return n
}

// endpointTokens returns the semaphore of one endpoint.
func (d *Dispatcher) endpointTokens(id string) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	tokens, ok := d.endpoint[id]
	if !ok {
		tokens = make(chan struct{}, d.cfg.PerEndpoint)
		d.endpoint[id] = tokens
	}
	return tokens
}

// nextRetry returns when a delivery that has failed attempts times is due
// again, with ±10% jitter, or false when it has no retries left.
func (d *Dispatcher) nextRetry(attempts int, now time.Time, retryAfter time.Duration) (time.Time, bool) {
	if attempts > len(d.cfg.Schedule) {
		return time.Time{}, false
	}
	wait := d.cfg.Schedule[attempts-1]
	wait += time.Duration((rand.Float64()*0.2 - 0.1) * float64(wait))
	return now.Add(max(wait, retryAfter)), true
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
