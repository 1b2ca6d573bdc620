package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/internal/pgcluster"
	"github.com/civicbase/civicbase/store"
)

// benchReceiver is a fast local webhook endpoint that records, per request,
// the time from the event's commit to its arrival.
type benchReceiver struct {
	mu        sync.Mutex
	count     int
	last      time.Time
	latencies []time.Duration
	srv       *http.Server
	url       string
}

func startBenchReceiver() (*benchReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &benchReceiver{url: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *benchReceiver) serve(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(req.Body)
	var event struct {
		CommitTime time.Time `json:"commitTime"`
	}
	_ = json.Unmarshal(body, &event)
	r.mu.Lock()
	r.count++
	r.last = now
	if !event.CommitTime.IsZero() {
		r.latencies = append(r.latencies, now.Sub(event.CommitTime))
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *benchReceiver) received() (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count, r.last
}

func runWebhookBench(ctx context.Context, c *pgcluster.Cluster, changes int) error {
	fmt.Printf("webhook benchmark: %d changes to one fast local endpoint, GOMAXPROCS=%d\n", changes, runtime.GOMAXPROCS(0))
	rate, elapsed, err := webhookThroughput(ctx, c, changes)
	if err != nil {
		return err
	}
	fmt.Printf("throughput: %d deliveries in %.2fs from first commit to last 2xx: %.0f deliveries/s\n", changes, elapsed.Seconds(), rate)
	p50, p99, n, err := webhookLatency(ctx, c, 200, 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("latency at 200 changes/s for 30s (%d deliveries), commit to receipt: p50 %.2f ms, p99 %.2f ms\n",
		n, float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000)
	return nil
}

// startPipeline runs the reader and a dispatcher on the bench database with
// one endpoint subscribed to everything, until the returned stop is called.
func startPipeline(ctx context.Context, pool *pgxpool.Pool, cfg config.Config, url string) (stop func(), err error) {
	st := store.New(pool)
	if _, err := st.CreateWebhook(ctx, store.Webhook{ID: "wh_bench", URL: url, Events: []string{"*"},
		Secret: "plain:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}); err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	reader := cdc.NewReader(cfg, pool, st, quiet)
	dispatcher := delivery.NewDispatcher(delivery.Config{AllowPrivate: true}, st, nil, quiet)
	wg.Go(func() { _ = reader.Run(runCtx) })
	wg.Go(func() { _ = dispatcher.Run(runCtx) })
	for !reader.Status().Streaming {
		time.Sleep(10 * time.Millisecond)
	}
	return func() { cancel(); wg.Wait() }, nil
}

func webhookThroughput(ctx context.Context, c *pgcluster.Cluster, changes int) (float64, time.Duration, error) {
	pool, cfg, err := benchDatabase(ctx, c, "webhook_throughput")
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	recv, err := startBenchReceiver()
	if err != nil {
		return 0, 0, err
	}
	defer recv.srv.Close()
	stop, err := startPipeline(ctx, pool, cfg, recv.url)
	if err != nil {
		return 0, 0, err
	}
	defer stop()

	first, err := runWorkload(ctx, pool, changes)
	if err != nil {
		return 0, 0, err
	}
	for {
		n, last := recv.received()
		if n >= changes {
			elapsed := last.Sub(first)
			return float64(changes) / elapsed.Seconds(), elapsed, nil
		}
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// webhookLatency writes rate single-row transactions per second for d and
// returns the commit-to-receipt percentiles.
func webhookLatency(ctx context.Context, c *pgcluster.Cluster, rate int, d time.Duration) (p50, p99 time.Duration, n int, err error) {
	pool, cfg, err := benchDatabase(ctx, c, "webhook_latency")
	if err != nil {
		return 0, 0, 0, err
	}
	defer pool.Close()
	recv, err := startBenchReceiver()
	if err != nil {
		return 0, 0, 0, err
	}
	defer recv.srv.Close()
	stop, err := startPipeline(ctx, pool, cfg, recv.url)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()

	total := rate * int(d/time.Second)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range total {
		<-tick.C
		if _, err := pool.Exec(ctx, `INSERT INTO bench_items VALUES ($1, 'x', 1, 1, '{}', now())`, i); err != nil {
			return 0, 0, 0, err
		}
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, _ := recv.received(); got >= total {
			break
		}
	}
	recv.mu.Lock()
	lat := slices.Clone(recv.latencies)
	recv.mu.Unlock()
	if len(lat) == 0 {
		return 0, 0, 0, fmt.Errorf("no deliveries arrived")
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], len(lat), nil
}
