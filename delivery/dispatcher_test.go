package delivery_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// received is one request a test receiver got.
type received struct {
	id     string
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is an HTTP endpoint on loopback whose responses a test scripts.
type receiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
	// answer returns the status code and may set response headers. n
	// counts earlier requests with the same webhook-id.
	answer func(r received, n int, h http.Header) int
}

func newReceiver(t *testing.T, answer func(r received, n int, h http.Header) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r := received{id: req.Header.Get("webhook-id"), header: req.Header.Clone(), body: body, at: time.Now()}
		rc.mu.Lock()
		n := 0
		for _, g := range rc.got {
			if g.id == r.id {
				n++
			}
		}
		rc.got = append(rc.got, r)
		rc.mu.Unlock()
		code := http.StatusOK
		if rc.answer != nil {
			code = rc.answer(r, n, w.Header())
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "answer %d", code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

type bundle struct {
	pool  *pgxpool.Pool
	store *store.Store
	seq   int
}

func logger() *slog.Logger {
	if os.Getenv("CIVICBASE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, sql.Migrate(ctx, pool, logger()))
	return &bundle{pool: pool, store: store.New(pool)}
}

// register stores an endpoint for url subscribed to events.
func (b *bundle) register(t *testing.T, url string, events ...string) string {
	t.Helper()
	id := fmt.Sprintf("wh_test%d", time.Now().UnixNano())
	_, err := b.store.CreateWebhook(context.Background(), store.Webhook{ID: id, URL: url, Events: events, Secret: "plain:" + testSecret})
	require.NoError(t, err)
	return id
}

// write stores one data.created event per instance id, in order.
func (b *bundle) write(t *testing.T, instances ...string) []string {
	t.Helper()
	var events []store.Event
	var ids []string
	for _, inst := range instances {
		b.seq++
		id := fmt.Sprintf("evt_%016x%08x00", 1000+b.seq, 0)
		payload := fmt.Sprintf(`{"id":%q,"event":"data.created","model":"User","table":"public.users","instanceId":%q,"changes":{"n":%d}}`, id, inst, b.seq)
		events = append(events, store.Event{ID: id, Event: "data.created", Model: "User", Table: "public.users",
			InstanceID: &inst, CommitLSN: pglogrepl.LSN(1000 + b.seq), CommitTime: time.Now(), Payload: []byte(payload)})
		ids = append(ids, id)
	}
	require.NoError(t, b.store.Write(context.Background(), events, nil))
	return ids
}

// run starts a dispatcher that stops when the test ends. The function it
// returns stops it earlier: it cancels Run's context and waits for Run.
func (b *bundle) run(t *testing.T, cfg delivery.Config) (stop func()) {
	t.Helper()
	cfg.AllowPrivate = true
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	d := delivery.NewDispatcher(cfg, b.store, nil, logger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("dispatcher did not stop within 30s")
		}
	})
	t.Cleanup(stop)
	return stop
}

func (b *bundle) deliveries(t *testing.T, webhookID string) []store.DeliveryInfo {
	t.Helper()
	list, err := b.store.Deliveries(context.Background(), webhookID, "", 0, 1000)
	require.NoError(t, err)
	return list
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var fastSchedule = []time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}

func TestDeliveredAfterThreeFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(_ received, n int, _ http.Header) int {
		if n < 3 {
			return 500
		}
		return 200
	})
	hook := b.register(t, rc.URL+"/hook", "*")
	b.run(t, delivery.Config{Schedule: fastSchedule})

	ids := b.write(t, "u1")
	waitFor(t, 10*time.Second, "delivered", func() bool {
		d := b.deliveries(t, hook)
		return len(d) == 1 && d[0].Status == store.StatusDelivered
	})

	d := b.deliveries(t, hook)[0]
	require.Equal(t, ids[0], d.EventID)
	require.Len(t, d.Attempts, 4)
	for i, a := range d.Attempts {
		want := 500
		if i == 3 {
			want = 200
		}
		require.Equal(t, want, *a.StatusCode)
		require.Equal(t, fmt.Sprintf("answer %d", want), *a.Response)
	}
	require.Equal(t, "endpoint returned status 500", *d.Attempts[0].Error)
	require.Len(t, rc.requests(), 4)
	for _, r := range rc.requests() {
		require.Equal(t, ids[0], r.id, "every retry carries the same webhook-id")
		require.NoError(t, delivery.Verify(testSecret, r.header, r.body, time.Minute))
	}
}

func TestHangingReceiverTimesOutAndRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var calls atomic.Int32
	rc := newReceiver(t, func(_ received, n int, _ http.Header) int {
		calls.Add(1)
		if n == 0 {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		return 200
	})
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: fastSchedule, Timeout: 300 * time.Millisecond})

	b.write(t, "u1")
	waitFor(t, 10*time.Second, "delivered", func() bool {
		d := b.deliveries(t, hook)
		return len(d) == 1 && d[0].Status == store.StatusDelivered
	})

	d := b.deliveries(t, hook)[0]
	require.Len(t, d.Attempts, 2)
	require.Nil(t, d.Attempts[0].StatusCode)
	require.Contains(t, *d.Attempts[0].Error, "Timeout")
	require.GreaterOrEqual(t, d.Attempts[0].DurationMS, 250.0)
}

func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(received, int, http.Header) int { return http.StatusGone })
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: fastSchedule})

	b.write(t, "u1", "u2")
	waitFor(t, 10*time.Second, "endpoint disabled", func() bool {
		w, err := b.store.Webhook(context.Background(), hook)
		require.NoError(t, err)
		return !w.Active
	})
	time.Sleep(200 * time.Millisecond)

	w, err := b.store.Webhook(context.Background(), hook)
	require.NoError(t, err)
	require.Equal(t, "the endpoint returned status 410 Gone", *w.DisabledReason)
	require.LessOrEqual(t, len(rc.requests()), 2, "a disabled endpoint gets no more requests")
	for _, d := range b.deliveries(t, hook) {
		require.Equal(t, store.StatusPending, d.Status, "deliveries wait for the endpoint to be enabled")
	}
}

func TestDeadDeliveryRetriedByHand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var healthy atomic.Bool
	rc := newReceiver(t, func(received, int, http.Header) int {
		if healthy.Load() {
			return 200
		}
		return 503
	})
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: fastSchedule})

	b.write(t, "u1")
	waitFor(t, 10*time.Second, "dead", func() bool {
		d := b.deliveries(t, hook)
		return len(d) == 1 && d[0].Status == store.StatusDead
	})
	require.Len(t, b.deliveries(t, hook)[0].Attempts, len(fastSchedule)+1)
	healthy.Store(true)
	require.NoError(t, b.store.RetryDelivery(context.Background(), hook, b.deliveries(t, hook)[0].ID))
	waitFor(t, 10*time.Second, "delivered", func() bool {
		return b.deliveries(t, hook)[0].Status == store.StatusDelivered
	})

	require.Len(t, rc.requests(), len(fastSchedule)+2)
}

func TestRowOrderHeldWhileOtherRowsFlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var firstOfA atomic.Value
	rc := newReceiver(t, func(r received, n int, _ http.Header) int {
		if id, _ := firstOfA.Load().(string); r.id == id && n < 3 {
			return 500
		}
		return 200
	})
	hook := b.register(t, rc.URL, "User.created")
	ids := b.write(t, "a", "b", "a", "b", "a", "b")
	firstOfA.Store(ids[0])
	b.run(t, delivery.Config{Schedule: []time.Duration{300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}})

	waitFor(t, 15*time.Second, "all delivered", func() bool {
		for _, d := range b.deliveries(t, hook) {
			if d.Status != store.StatusDelivered {
				return false
			}
		}
		return true
	})

	var order []string
	for _, r := range rc.requests() {
		if len(order) == 0 || order[len(order)-1] != r.id {
			order = append(order, r.id)
		}
	}
	firstSuccessOfA := -1
	for i, r := range rc.requests() {
		if r.id == ids[0] {
			firstSuccessOfA = i
		}
	}
	bDone := 0
	for _, r := range rc.requests()[:firstSuccessOfA] {
		if r.id == ids[1] || r.id == ids[3] || r.id == ids[5] {
			bDone++
		}
	}
	require.Equal(t, 3, bDone, "row b flows while row a's first event fails")
	var aOrder []string
	for _, r := range rc.requests() {
		if (r.id == ids[0] || r.id == ids[2] || r.id == ids[4]) && (len(aOrder) == 0 || aOrder[len(aOrder)-1] != r.id) {
			aOrder = append(aOrder, r.id)
		}
	}
	require.Equal(t, []string{ids[0], ids[2], ids[4]}, aOrder, "row a arrives in commit order")
}

func TestReplayResends(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: fastSchedule})
	ids := b.write(t, "u1", "u2", "u3")
	waitFor(t, 10*time.Second, "first deliveries", func() bool { return len(rc.requests()) == 3 })

	n, err := b.store.Replay(context.Background(), hook, ids[0], time.Time{})
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "replayed deliveries", func() bool { return len(rc.requests()) == 5 })

	require.Equal(t, int64(2), n)
	got := rc.requests()
	require.ElementsMatch(t, []string{ids[1], ids[2]}, []string{got[3].id, got[4].id})
}

func TestRotationSignsWithBothSecretsDuringGrace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	hook := b.register(t, rc.URL, "*")
	const newSecret = "whsec_dGhpcyBpcyBhIGJyYW5kIG5ldyBzZWNyZXQga2V5IQ=="
	_, err := b.store.RotateSecret(context.Background(), hook, "plain:"+newSecret, time.Now().Add(time.Hour))
	require.NoError(t, err)
	b.run(t, delivery.Config{Schedule: fastSchedule})

	b.write(t, "u1")
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(rc.requests()) == 1 })
	during := rc.requests()[0]
	_, err = b.store.RotateSecret(context.Background(), hook, "plain:"+newSecret, time.Now().Add(-time.Second))
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond) // the dispatcher caches endpoints for a second
	b.write(t, "u2")
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(rc.requests()) == 2 })
	after := rc.requests()[1]

	require.NoError(t, delivery.Verify(newSecret, during.header, during.body, time.Minute))
	require.NoError(t, delivery.Verify(testSecret, during.header, during.body, time.Minute),
		"a receiver still on the old secret accepts deliveries during the grace period")
	entries := splitSignatures(during.header.Get("webhook-signature"))
	require.Len(t, entries, 2)
	old, err := delivery.ParseSecret(testSecret)
	require.NoError(t, err)
	ts, err := strconv.ParseInt(during.header.Get("webhook-timestamp"), 10, 64)
	require.NoError(t, err)
	require.Equal(t, delivery.Sign(during.id, time.Unix(ts, 0), during.body, old), entries[1],
		"the old secret signs the header during the grace period")
	require.NoError(t, delivery.Verify(newSecret, after.header, after.body, time.Minute))
	require.Len(t, splitSignatures(after.header.Get("webhook-signature")), 1)
}

func splitSignatures(h string) []string {
	var out []string
	for _, part := range strings.Fields(h) {
		out = append(out, part)
	}
	return out
}

func TestTwoDispatchersSendEachDeliveryOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	hook := b.register(t, rc.URL, "*")
	b.run(t, delivery.Config{Schedule: fastSchedule})
	b.run(t, delivery.Config{Schedule: fastSchedule})

	var instances []string
	for i := range 500 {
		instances = append(instances, fmt.Sprint("u", i))
	}
	b.write(t, instances...)
	waitFor(t, 30*time.Second, "all delivered", func() bool {
		var n int
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT count(*) FROM civicbase.deliveries WHERE webhook_id = $1 AND status = 'delivered'`, hook).Scan(&n))
		return n == 500
	})

	seen := map[string]int{}
	for _, r := range rc.requests() {
		seen[r.id]++
	}
	require.Len(t, seen, 500)
	for id, n := range seen {
		require.Equal(t, 1, n, id)
	}
}

func TestEndpointFailingTooLongIsDisabled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(received, int, http.Header) int { return 500 })
	hook := b.register(t, rc.URL, "*")
	schedule := make([]time.Duration, 20)
	for i := range schedule {
		schedule[i] = 50 * time.Millisecond
	}
	b.run(t, delivery.Config{Schedule: schedule, DisableAfter: 300 * time.Millisecond})

	b.write(t, "u1")
	waitFor(t, 10*time.Second, "endpoint disabled", func() bool {
		w, err := b.store.Webhook(context.Background(), hook)
		require.NoError(t, err)
		return !w.Active
	})

	w, err := b.store.Webhook(context.Background(), hook)
	require.NoError(t, err)
	require.Contains(t, *w.DisabledReason, "every delivery failed since")
	require.NotNil(t, w.FailingSince)
	active := true
	_, err = b.store.UpdateWebhook(context.Background(), hook, store.WebhookUpdate{Active: &active})
	require.NoError(t, err)
	w, err = b.store.Webhook(context.Background(), hook)
	require.NoError(t, err)
	require.True(t, w.Active)
	require.Nil(t, w.FailingSince, "re-enabling starts a fresh failure streak")
}
