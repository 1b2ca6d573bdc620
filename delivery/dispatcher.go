package delivery

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
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
	// Workers is the most deliveries in flight in this process. Default 128.
	Workers int
	// PerEndpoint is the most deliveries in flight to one endpoint from this
	// process, so one slow endpoint cannot take every worker. Default 32.
	PerEndpoint int
	// ClaimBatch is the most deliveries claimed per query. Default 512.
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
	// ShutdownTimeout is how long attempts in flight when Run's context
	// ends may continue before they are canceled. Default 10s.
	ShutdownTimeout time.Duration
	// AllowPrivate allows endpoints on loopback and private addresses, for
	// development (CIVICBASE_DEV=true).
	AllowPrivate bool
	// Metrics records attempts when not nil.
	Metrics *Metrics
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Workers = cmp.Or(c.Workers, 128)
	c.PerEndpoint = cmp.Or(c.PerEndpoint, 32)
	c.ClaimBatch = cmp.Or(c.ClaimBatch, 512)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, 5*time.Second)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.Lease = cmp.Or(c.Lease, 60*time.Second)
	c.DisableAfter = cmp.Or(c.DisableAfter, 120*time.Hour)
	c.PollInterval = cmp.Or(c.PollInterval, 500*time.Millisecond)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule
	}
	return c
}

// Dispatcher claims due deliveries and sends them. Every instance runs one;
// they share the queue through row locks.
//
// One claimer goroutine keeps local per-endpoint queues topped up with
// leased deliveries, claiming in batches so that the claim query, which must
// skip rows held back for ordering, runs rarely. A fixed pool of workers
// sends from the queues, at most PerEndpoint at a time to one endpoint.
type Dispatcher struct {
	cfg    Config
	store  *store.Store
	client *http.Client
	hooks  *hookCache
	log    *slog.Logger

	sched   *scheduler
	mu      sync.Mutex
	unsent  []store.Claimed // claimed, not sent, and no longer queued
	results chan store.Result
}

// NewDispatcher returns a dispatcher on st. cipher opens stored secrets and
// may be nil when secrets are not encrypted.
func NewDispatcher(cfg Config, st *store.Store, cipher *Cipher, log *slog.Logger) *Dispatcher {
	cfg = cfg.WithDefaults()
	return &Dispatcher{
		cfg: cfg, store: st, log: log,
		client:  NewHTTPClient(Guard{AllowPrivate: cfg.AllowPrivate}, cfg.ConnectTimeout, cfg.Timeout),
		hooks:   newHookCache(st, cipher),
		sched:   newScheduler(cfg.PerEndpoint, 2*cfg.ClaimBatch),
		results: make(chan store.Result, cfg.Workers),
	}
}

// Run sends deliveries until ctx ends. It then starts no new attempt, lets
// attempts in flight finish for up to ShutdownTimeout and records their
// results. Deliveries it claimed but did not send, and those whose attempt
// the timeout cut short, get their leases released, so another instance,
// or this one after a restart, sends them at once.
func (d *Dispatcher) Run(ctx context.Context) error {
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.record(context.WithoutCancel(ctx))
	}()
	// Attempts run under sendCtx, which outlives ctx by ShutdownTimeout.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	var workers sync.WaitGroup
	for range d.cfg.Workers {
		workers.Go(func() { d.work(ctx, sendCtx) })
	}
	d.claimLoop(ctx)
	d.sched.stop()
	deadline := time.AfterFunc(d.cfg.ShutdownTimeout, cancelSends)
	workers.Wait()
	deadline.Stop()
	close(d.results)
	<-recorded
	d.release(context.WithoutCancel(ctx))
	return nil
}

// work sends queued deliveries until the scheduler stops, which Run does
// once ctx ends. Attempts run under sendCtx.
func (d *Dispatcher) work(ctx, sendCtx context.Context) {
	for {
		c, ok := d.sched.next()
		if !ok {
			return
		}
		d.send(ctx, sendCtx, c)
	}
}

// send makes one attempt at c and queues its result. When ctx ended before
// the attempt began, it keeps c for release instead.
func (d *Dispatcher) send(ctx, sendCtx context.Context, c store.Claimed) {
	if ctx.Err() != nil {
		d.sched.finish(c, false)
		d.keepUnsent(c)
		return
	}
	c, ok := d.renewIfNeeded(ctx, c)
	if !ok {
		d.sched.finish(c, false)
		return
	}
	res := d.attempt(sendCtx, c)
	d.sched.finish(c, true)
	if sendCtx.Err() != nil && res.Status != store.StatusDelivered {
		// Cut short by the shutdown timeout: not the endpoint's fault, so
		// it is released rather than counted as a failed attempt.
		d.keepUnsent(c)
		return
	}
	d.cfg.Metrics.observe(c, res)
	d.results <- res
}

// renewIfNeeded renews the lease of c when the rest of it might not cover an
// attempt, so that c is not claimed again and sent twice. It reports false
// when c must not be sent because the claim was lost or not renewed.
func (d *Dispatcher) renewIfNeeded(ctx context.Context, c store.Claimed) (store.Claimed, bool) {
	if time.Until(c.LeaseUntil) >= d.cfg.Timeout+(d.cfg.Lease-d.cfg.Timeout)/2 {
		return c, true
	}
	renewed, ok, err := d.store.Renew(ctx, c, d.cfg.Lease)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "renewing a delivery's lease failed; it is sent after the lease ends",
				"webhook_id", c.WebhookID, "event_id", c.EventID, "err", err)
		}
		return c, false
	case !ok:
		d.log.DebugContext(ctx, "delivery claimed again after its lease ended; not sending this copy",
			"webhook_id", c.WebhookID, "event_id", c.EventID)
		return c, false
	}
	return renewed, true
}

// keepUnsent adds c to the deliveries that release gives back at the end of
// Run.
func (d *Dispatcher) keepUnsent(c store.Claimed) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unsent = append(d.unsent, c)
}

func (d *Dispatcher) claimLoop(ctx context.Context) {
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	var deferred time.Time
	for ctx.Err() == nil {
		if time.Since(deferred) >= deferBlockedEvery {
			d.deferBlocked(ctx)
			deferred = time.Now()
		}
		written := d.store.Written()
		room := d.sched.room()
		if room < d.cfg.ClaimBatch/4 {
			// Wait for the workers to make room, so that claims stay big.
			select {
			case <-ctx.Done():
			case <-d.sched.taken:
			}
			continue
		}
		if d.claim(ctx, min(room, d.cfg.ClaimBatch)) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-written:
		case <-poll.C:
		}
	}
}

// claim leases up to n due deliveries into the scheduler's queues and
// returns how many.
func (d *Dispatcher) claim(ctx context.Context, n int) int {
	claimed, err := d.store.Claim(ctx, n, d.cfg.Lease, d.sched.limits())
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "claiming deliveries failed; retrying", "err", err)
			sleep(ctx, time.Second)
		}
		return 0
	}
	d.sched.add(claimed) // room was checked, and only this goroutine adds
	return len(claimed)
}

// Every deferBlockedEvery, deliveries that wait behind a failed delivery of
// the same row are moved out of the claim's way. Each run looks at the
// first deferBlockedScan due deliveries of each endpoint, enough for an
// endpoint that gets a few hundred events per second.
const (
	deferBlockedEvery = 5 * time.Second
	deferBlockedScan  = 2000
)

// deferBlocked runs store.DeferBlocked and logs a failure, which only costs
// claims some speed until the next run.
func (d *Dispatcher) deferBlocked(ctx context.Context) {
	n, err := d.store.DeferBlocked(ctx, deferBlockedScan)
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.WarnContext(ctx, "deferring deliveries blocked behind failed ones failed; retrying later", "err", err)
	case n > 0:
		d.log.DebugContext(ctx, "deferred deliveries blocked behind failed ones", "count", n)
	}
}

// release gives back the leases of deliveries claimed but not sent.
func (d *Dispatcher) release(ctx context.Context) {
	d.mu.Lock()
	left := slices.Concat(d.unsent, d.sched.drain())
	d.mu.Unlock()
	if len(left) == 0 {
		return
	}
	if err := d.store.Release(ctx, left); err != nil {
		d.log.WarnContext(ctx, "releasing unsent deliveries failed; they are sent when their lease ends", "count", len(left), "err", err)
	}
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
