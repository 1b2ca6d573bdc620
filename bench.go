package main

import (
	"context"

	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/internal/pgcluster"
	"github.com/civicbase/civicbase/store"
)

// benchSchema is the table the capture benchmark writes to.
const benchSchema = `CREATE TABLE bench_items (
	id bigint PRIMARY KEY, name text NOT NULL, qty int NOT NULL, price numeric(12,2), tags text[], updated_at timestamptz)`

func benchCommand(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	changes := fs.Int("changes", 200_000, "changes in the workload (60% inserts, 30% updates, 10% deletes)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	switch name := fs.Arg(0); name {
	case "capture", "webhooks":
	case "realtime":
		return runRealtimeBench(ctx, fs.Args()[1:])
	case "soak":
		return runSoakBench(ctx, fs.Args()[1:])
	default:
		return fmt.Errorf("unknown benchmark %q; run `civicbase bench capture`, `civicbase bench webhooks`, `civicbase bench realtime` or `civicbase bench soak`", name)
	}
	if *changes < 10_000 || *changes%10_000 != 0 {
		return fmt.Errorf("-changes %d is invalid; use a multiple of 10000, at least 10000", *changes)
	}

	c, err := pgcluster.Start(context.WithoutCancel(ctx), pgcluster.Options{})
	if err != nil {
		return err
	}
	defer c.Remove(context.WithoutCancel(ctx))
	if fs.Arg(0) == "webhooks" {
		return runWebhookBench(ctx, c, *changes)
	}
	return runCaptureBench(ctx, c, *changes)
}

type benchResult struct {
	rate    float64 // changes per second
	elapsed time.Duration
	maxHeap uint64
}

func runCaptureBench(ctx context.Context, c *pgcluster.Cluster, changes int) error {
	fmt.Printf("capture benchmark: %d changes (60%% inserts in 1,000-row transactions, 30%% updates, 10%% deletes), GOMAXPROCS=%d\n",
		changes, runtime.GOMAXPROCS(0))
	rawCatch, ourCatch, err := benchCatchUp(ctx, c, changes)
	if err != nil {
		return err
	}
	rawLive, err := benchLive(ctx, c, changes, "live_raw", false)
	if err != nil {
		return err
	}
	ourLive, err := benchLive(ctx, c, changes, "live_civicbase", true)
	if err != nil {
		return err
	}
	fmt.Printf("%-28s %12s %10s %12s\n", "mode", "changes/s", "seconds", "max heap MB")
	for _, r := range []struct {
		name string
		res  benchResult
	}{{"bare pgoutput, live", rawLive}, {"civicbase, live", ourLive}, {"bare pgoutput, catch-up", rawCatch}, {"civicbase, catch-up", ourCatch}} {
		fmt.Printf("%-28s %12.0f %10.2f %12.1f\n", r.name, r.res.rate, r.res.elapsed.Seconds(), float64(r.res.maxHeap)/(1<<20))
	}
	fmt.Printf("ratio civicbase/bare, live:     %.2f\n", ourLive.rate/rawLive.rate)
	fmt.Printf("ratio civicbase/bare, catch-up: %.2f\n", ourCatch.rate/rawCatch.rate)
	return nil
}

// benchCatchUp writes the workload with two slots in place, then lets a bare
// decoder and then civicbase read the same WAL from the start.
func benchCatchUp(ctx context.Context, c *pgcluster.Cluster, changes int) (raw, ours benchResult, err error) {
	pool, cfg, err := benchDatabase(ctx, c, "catchup")
	if err != nil {
		return raw, ours, err
	}
	defer pool.Close()
	if err := createSlot(ctx, cfg, "catchup_raw_slot"); err != nil {
		return raw, ours, err
	}
	if err := createSlot(ctx, cfg, cfg.Slot); err != nil {
		return raw, ours, err
	}
	if _, err := runWorkload(ctx, pool, changes); err != nil {
		return raw, ours, err
	}
	if raw, err = rawDecode(ctx, cfg, "catchup_raw_slot", changes); err != nil {
		return raw, ours, err
	}
	ours, err = civicbaseCapture(ctx, pool, cfg, changes, nil)
	return raw, ours, err
}

// benchLive runs the workload while one reader streams it, and measures from
// the first commit to the last change decoded (bare) or stored (civicbase).
func benchLive(ctx context.Context, c *pgcluster.Cluster, changes int, db string, civicbase bool) (benchResult, error) {
	pool, cfg, err := benchDatabase(ctx, c, db)
	if err != nil {
		return benchResult{}, err
	}
	defer pool.Close()
	if err := createSlot(ctx, cfg, cfg.Slot); err != nil {
		return benchResult{}, err
	}
	var firstCommit atomic.Int64
	workload := func() error {
		start, err := runWorkload(ctx, pool, changes)
		firstCommit.Store(start.UnixNano())
		return err
	}
	if civicbase {
		return civicbaseCapture(ctx, pool, cfg, changes, workload)
	}
	errc := make(chan error, 1)
	go func() { errc <- workload() }()
	res, err := rawDecode(ctx, cfg, cfg.Slot, changes)
	if werr := <-errc; werr != nil {
		return res, werr
	}
	return res, err
}

func benchDatabase(ctx context.Context, c *pgcluster.Cluster, name string) (*pgxpool.Pool, config.Config, error) {
	admin, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return nil, config.Config{}, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, config.Config{}, fmt.Errorf("creating database %s: %w", name, err)
	}
	cfg, err := config.Parse([]byte("tables:\n  - name: bench_items\n"))
	if err != nil {
		return nil, cfg, err
	}
	cfg.DatabaseURL = config.Secret(c.URL(name))
	cfg.Slot = name + "_slot" // slot names are unique across the cluster
	pool, err := openPool(ctx, c.URL(name))
	if err != nil {
		return nil, cfg, err
	}
	if _, err := pool.Exec(ctx, benchSchema); err != nil {
		pool.Close()
		return nil, cfg, fmt.Errorf("creating bench table: %w", err)
	}
	if err := prepare(ctx, pool, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		pool.Close()
		return nil, cfg, err
	}
	return pool, cfg, nil
}

func createSlot(ctx context.Context, cfg config.Config, slot string) error {
	conn, err := pgx.Connect(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
	if err != nil {
		return fmt.Errorf("creating slot %s: %w", slot, err)
	}
	return nil
}

// runWorkload writes changes in rounds of 10,000: six 1,000-row insert
// transactions, three 1,000-row update transactions (one or two columns)
// and one 1,000-row delete transaction. It returns when the first
// transaction committed.
func runWorkload(ctx context.Context, pool *pgxpool.Pool, changes int) (time.Time, error) {
	var first time.Time
	exec := func(sql string, args ...any) error {
		_, err := pool.Exec(ctx, sql, args...)
		if first.IsZero() {
			first = time.Now()
		}
		return err
	}
	for round := range changes / 10_000 {
		base := int64(round) * 6000
		for i := range int64(6) {
			if err := exec(`INSERT INTO bench_items SELECT g, 'item ' || g, 1, 9.99, '{a,b}', now()
				FROM generate_series($1::bigint, $2::bigint) g`, base+i*1000, base+i*1000+999); err != nil {
				return first, fmt.Errorf("inserting: %w", err)
			}
		}
		updates := []string{
			`UPDATE bench_items SET qty = qty + 1 WHERE id BETWEEN $1 AND $2`,
			`UPDATE bench_items SET qty = qty + 1, updated_at = now() WHERE id BETWEEN $1 AND $2`,
			`UPDATE bench_items SET name = name || '!' WHERE id BETWEEN $1 AND $2`,
		}
		for i, u := range updates {
			if err := exec(u, base+int64(i)*1000, base+int64(i)*1000+999); err != nil {
				return first, fmt.Errorf("updating: %w", err)
			}
		}
		if err := exec(`DELETE FROM bench_items WHERE id BETWEEN $1 AND $2`, base+5000, base+5999); err != nil {
			return first, fmt.Errorf("deleting: %w", err)
		}
	}
	return first, nil
}

// rawDecode is the baseline: a bare pglogrepl reader that decodes every
// pgoutput message and discards it. It never acknowledges, which is fine
// for a slot that the benchmark drops with its database.
func rawDecode(ctx context.Context, cfg config.Config, slot string, changes int) (benchResult, error) {
	pc, err := pgconn.ParseConfig(cfg.DatabaseURL.Reveal())
	if err != nil {
		return benchResult{}, fmt.Errorf("parsing the bench database URL: %w", err)
	}
	pc.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return benchResult{}, fmt.Errorf("opening a replication connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + cfg.Publication + "'"},
	})
	if err != nil {
		return benchResult{}, fmt.Errorf("starting replication on slot %s: %w", slot, err)
	}

	var seen int
	var start time.Time
	heap := newHeapSampler()
	defer heap.stop()
	for seen < changes {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return benchResult{}, fmt.Errorf("receiving: %w", err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			return benchResult{}, err
		}
		m, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			return benchResult{}, err
		}
		switch m.(type) {
		case *pglogrepl.BeginMessage:
			if start.IsZero() {
				start = time.Now()
			}
		case *pglogrepl.InsertMessage, *pglogrepl.UpdateMessage, *pglogrepl.DeleteMessage:
			seen++
		}
	}

	elapsed := time.Since(start)
	return benchResult{rate: float64(changes) / elapsed.Seconds(), elapsed: elapsed, maxHeap: heap.stop()}, nil
}

// civicbaseCapture runs the real reader and store until every change of the
// workload is stored. With workload set, it runs the workload meanwhile and
// measures from its first commit.
func civicbaseCapture(ctx context.Context, pool *pgxpool.Pool, cfg config.Config, changes int, workload func() error) (benchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reader := cdc.NewReader(cfg, pool, store.New(pool), slog.New(slog.NewTextHandler(io.Discard, nil)))
	heap := newHeapSampler()
	defer heap.stop()
	errc := make(chan error, 2)
	go func() { errc <- reader.Run(ctx) }()

	start := time.Now()
	if workload != nil {
		go func() { errc <- workload() }()
	}
	for {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM civicbase.events").Scan(&n); err != nil {
			return benchResult{}, err
		}
		if n >= changes {
			break
		}
		select {
		case err := <-errc:
			if err != nil {
				return benchResult{}, err
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	return benchResult{rate: float64(changes) / elapsed.Seconds(), elapsed: elapsed, maxHeap: heap.stop()}, nil
}

// heapSampler records the largest live heap (HeapAlloc) and the largest
// HeapInuse seen every 20 ms.
type heapSampler struct {
	max      atomic.Uint64
	maxInuse atomic.Uint64
	done     chan struct{}
	quit     chan struct{}
}

func newHeapSampler() *heapSampler {
	h := &heapSampler{done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			h.max.Store(max(h.max.Load(), ms.HeapAlloc))
			h.maxInuse.Store(max(h.maxInuse.Load(), ms.HeapInuse))
			select {
			case <-h.quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return h
}

// stop ends the sampling and returns the largest HeapAlloc seen. It is
// safe to call twice.
func (h *heapSampler) stop() uint64 {
	select {
	case <-h.quit:
	default:
		close(h.quit)
	}
	<-h.done
	return h.max.Load()
}

// stopInuse ends the sampling and returns the largest HeapInuse seen.
func (h *heapSampler) stopInuse() uint64 {
	h.stop()
	return h.maxInuse.Load()
}
