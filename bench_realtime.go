package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/hub"
	"github.com/civicbase/civicbase/internal/pgcluster"
	"github.com/civicbase/civicbase/store"
)

const (
	realtimeToken = "bench-admin-token-0123456789"
	// realtimeP99Target is the commit-to-receipt p99 a rate must stay under.
	realtimeP99Target = 250 * time.Millisecond
	// realtimeDialers is how many clients connect at once, so the listen
	// backlog (somaxconn) does not overflow and drop SYNs.
	realtimeDialers = 200
	// realtimeDrain is how long a run waits after its last commit for every
	// client to receive every change. A message not received by then counts
	// as missed.
	realtimeDrain = 15 * time.Second
	// realtimeSweepStep is the longest run of one sweep step.
	realtimeSweepStep = 10 * time.Second
	// realtimeFileReserve is the number of file descriptors set aside for the
	// database pools, the listener and stdio. It is a generous estimate; a
	// run opens a few dozen.
	realtimeFileReserve = 200
)

// realtimeSweepRates are the rates in changes per second that -sweep tries
// after -rate, in order.
var realtimeSweepRates = []int{1, 2, 5, 7, 10, 15, 20, 30, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000}

type realtimeOptions struct {
	clients  int
	rate     int
	duration time.Duration
	sweep    bool
}

func parseRealtimeFlags(args []string) (realtimeOptions, error) {
	fs := flag.NewFlagSet("bench realtime", flag.ContinueOnError)
	var o realtimeOptions
	fs.IntVar(&o.clients, "clients", 10_000, "WebSocket clients subscribed to the bench model")
	fs.IntVar(&o.rate, "rate", 20, "changes per second, each a single-row INSERT transaction")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long changes are written; with -sweep, per step, at most 10s")
	fs.BoolVar(&o.sweep, "sweep", false, "raise the rate step by step from -rate until a step fails (p99 over 250ms, a missed message or a closed client), and report the last rate that passed")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.clients < 1 || o.rate < 1 || o.duration < time.Second {
		return o, fmt.Errorf("invalid flags: -clients %d and -rate %d must be at least 1, -duration %s at least 1s", o.clients, o.rate, o.duration)
	}
	return o, nil
}

func runRealtimeBench(ctx context.Context, args []string) error {
	opts, err := parseRealtimeFlags(args)
	if err != nil {
		return err
	}
	if err := ensureFileLimit(opts.clients); err != nil {
		return err
	}
	c, err := pgcluster.Start(context.WithoutCancel(ctx), pgcluster.Options{})
	if err != nil {
		return err
	}
	defer c.Remove(context.WithoutCancel(ctx))
	rig, err := startRealtimeRig(ctx, c)
	if err != nil {
		return err
	}
	defer rig.stop()

	fmt.Printf("realtime benchmark: %d clients on 127.0.0.1 subscribed to model %s, GOMAXPROCS=%d\n",
		opts.clients, rig.model, runtime.GOMAXPROCS(0))
	clients, dialErr := connectRealtimeClients(ctx, rig, opts.clients)
	defer closeRealtimeClients(clients)
	if len(clients) == 0 {
		return fmt.Errorf("no client connected: %w", dialErr)
	}
	if opts.sweep {
		err = sweepRealtime(ctx, rig, clients, opts)
	} else {
		_, err = runRealtimeRate(ctx, rig, clients, opts.rate, opts.duration)
	}
	if err != nil {
		return err
	}
	if dialErr != nil {
		return fmt.Errorf("only %d of %d clients connected: %w", len(clients), opts.clients, dialErr)
	}
	return nil
}

// ensureFileLimit raises RLIMIT_NOFILE so that both ends of every loopback
// connection fit, since clients and hub share this process. Raising the hard
// limit needs CAP_SYS_RESOURCE; without it the soft limit goes up to the hard
// one.
func ensureFileLimit(clients int) error {
	need := uint64(2*clients + realtimeFileReserve)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the file descriptor limit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: need, Max: max(need, lim.Max)}) == nil {
		return nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max}); err != nil {
		return fmt.Errorf("raising the file descriptor limit to %d: %w", lim.Max, err)
	}
	if lim.Max < need {
		return fmt.Errorf("%d clients need %d file descriptors (two per loopback connection, plus %d), but the hard limit is %d; "+
			"run with -clients %d or less, or raise the hard limit (ulimit -Hn)",
			clients, need, realtimeFileReserve, lim.Max, (lim.Max-realtimeFileReserve)/2)
	}
	return nil
}

// realtimeRig is the server side: the reader writing the event store and
// the hub serving it on 127.0.0.1.
type realtimeRig struct {
	pool  *pgxpool.Pool
	hub   *hub.Hub
	model string
	url   string
	stop  func()
}

func startRealtimeRig(ctx context.Context, c *pgcluster.Cluster) (*realtimeRig, error) {
	pool, cfg, err := benchDatabase(ctx, c, "realtime")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pool.Close()
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(pool)
	reader := cdc.NewReader(cfg, pool, st, quiet)
	realtime := hub.New(hub.Config{AdminToken: config.Secret(realtimeToken)}, st, pool, quiet)
	mux := http.NewServeMux()
	mux.Handle("/v1/realtime", realtime)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = reader.Run(runCtx) })
	wg.Go(func() { _ = realtime.Run(runCtx) })
	wg.Go(func() { _ = srv.Serve(ln) })
	for !reader.Status().Streaming {
		time.Sleep(10 * time.Millisecond)
	}
	stop := func() {
		cancel()
		_ = srv.Close()
		wg.Wait()
		pool.Close()
	}
	return &realtimeRig{pool: pool, hub: realtime, model: cfg.Tables[0].Model,
		url: "ws://" + ln.Addr().String() + "/v1/realtime", stop: stop}, nil
}

// realtimeClient is one subscribed WebSocket connection. Its read loop
// records each change it receives in the current round.
type realtimeClient struct {
	index int
	conn  *websocket.Conn
	round *atomic.Pointer[realtimeRound]
	// closeCode is the WebSocket close code the hub sent, or -1 after any
	// other read error; 0 while the connection is open.
	closeCode atomic.Int32
	lastSeq   int64
	buf       []byte
}

// connectRealtimeClients connects up to n clients, realtimeDialers at a
// time, and returns those that authenticated and subscribed, each with its
// read loop running. The error counts the failures and carries the first
// one.
func connectRealtimeClients(ctx context.Context, rig *realtimeRig, n int) ([]*realtimeClient, error) {
	before := measureMemory()
	runtime.MemProfileRate = 1 // attribute every allocation of the connect phase to hub or client
	start := time.Now()
	conns, failed, firstErr := dialAll(ctx, rig, n)
	elapsed := time.Since(start)
	time.Sleep(time.Second) // let the last replies go out, so sessions are idle
	dialed := measureMemory()

	round := new(atomic.Pointer[realtimeRound])
	round.Store(newRealtimeRound(0, 0, len(conns)))
	clients := make([]*realtimeClient, len(conns))
	for i, conn := range conns {
		clients[i] = &realtimeClient{index: i, conn: conn, round: round, lastSeq: -1}
		go clients[i].read()
	}
	time.Sleep(time.Second)
	idle := measureMemory()
	hubHeap, clientHeap := heapBySide()
	runtime.MemProfileRate = 512 * 1024 // Go's default

	fmt.Printf("connected %d of %d clients in %.1fs (authenticate + subscribe each, %d at a time)\n",
		len(conns), n, elapsed.Seconds(), realtimeDialers)
	if len(conns) > 0 {
		printConnectionMemory(before, dialed, idle, hubHeap, clientHeap, len(conns))
	}
	if failed > 0 {
		return clients, fmt.Errorf("%d clients failed to connect, the first with: %w", failed, firstErr)
	}
	return clients, nil
}

func dialAll(ctx context.Context, rig *realtimeRig, n int) (conns []*websocket.Conn, failed int, firstErr error) {
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 512}
	var mu sync.Mutex
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range realtimeDialers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				conn, err := connectRealtimeClient(ctx, dialer, rig)
				mu.Lock()
				if err != nil {
					failed++
					firstErr = cmpErr(firstErr, err)
				} else {
					conns = append(conns, conn)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return conns, failed, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// connectRealtimeClient dials the hub, authenticates with the admin token
// and subscribes to every event of the bench model.
func connectRealtimeClient(ctx context.Context, dialer *websocket.Dialer, rig *realtimeRig) (*websocket.Conn, error) {
	conn, _, err := dialer.DialContext(ctx, rig.url, nil)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", rig.url, err)
	}
	err = handshakeRealtime(conn, rig.model)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

func handshakeRealtime(conn *websocket.Conn, model string) error {
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	steps := []struct {
		name    string
		request any
		reply   string
	}{
		{"authenticate", map[string]string{"type": "authenticate", "token": realtimeToken}, "authenticated"},
		{"subscribe", map[string]any{"type": "subscribe", "id": "bench", "models": []string{model}}, "subscribed"},
	}
	for _, s := range steps {
		if err := conn.WriteJSON(s.request); err != nil {
			return fmt.Errorf("sending %s: %w", s.name, err)
		}
		var reply struct{ Type, Code, Message string }
		if err := conn.ReadJSON(&reply); err != nil {
			return fmt.Errorf("reading the %s reply: %w", s.reply, err)
		}
		if reply.Type != s.reply {
			return fmt.Errorf("expected a %s reply, got type %q (%s %s)", s.reply, reply.Type, reply.Code, reply.Message)
		}
	}
	return conn.SetReadDeadline(time.Time{})
}

func closeRealtimeClients(clients []*realtimeClient) {
	for _, c := range clients {
		_ = c.conn.Close()
	}
}

// read receives messages until the connection ends, and records the latency
// and the receipt of each change of the current round.
func (c *realtimeClient) read() {
	for {
		_, r, err := c.conn.NextReader()
		if err != nil {
			c.closeCode.Store(-1)
			if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
				c.closeCode.Store(int32(ce.Code))
			}
			return
		}
		c.buf, err = readAll(r, c.buf[:0])
		received := time.Now()
		if err != nil {
			continue // the next NextReader returns the connection's error
		}
		if seq, ok := instanceSeq(c.buf); ok {
			c.round.Load().record(c, seq, received)
		}
	}
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	b := bytes.NewBuffer(buf)
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

// instanceSeq returns the sequence number in a change message's
// instanceId, which is the bench row's primary key.
func instanceSeq(msg []byte) (int64, bool) {
	const key = `"instanceId":"`
	i := bytes.Index(msg, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := msg[i+len(key):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return 0, false
	}
	seq, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	return seq, err == nil
}

// realtimeRound is one run at one rate: the changes with sequence numbers
// base to base+len(commits)-1, their commit times and what the clients
// received.
type realtimeRound struct {
	base    int64
	commits []atomic.Int64 // Unix ns taken when the commit returned, 0 before
	// received counts, per client, the changes of this round it received
	// once and in order.
	received   []atomic.Int32
	duplicates atomic.Int64 // changes a client received again or out of order
	latency    latencyHistogram
}

func newRealtimeRound(base int64, changes, clients int) *realtimeRound {
	return &realtimeRound{base: base, commits: make([]atomic.Int64, changes), received: make([]atomic.Int32, clients)}
}

func (r *realtimeRound) record(c *realtimeClient, seq int64, received time.Time) {
	i := seq - r.base
	if i < 0 || i >= int64(len(r.commits)) {
		return // a late change of an earlier round
	}
	if seq <= c.lastSeq {
		r.duplicates.Add(1)
		return
	}
	c.lastSeq = seq
	commit := r.commits[i].Load()
	for commit == 0 { // the writer has committed but not yet stored the time
		runtime.Gosched()
		commit = r.commits[i].Load()
	}
	r.latency.record(time.Duration(max(0, received.UnixNano()-commit)))
	r.received[c.index].Add(1)
}

const (
	histogramBucket  = 100 * time.Microsecond
	histogramBuckets = 100_000 // 10 s; later latencies share the last bucket
)

// latencyHistogram counts latencies in 100 µs buckets, so a run stores
// 800 KB however many messages it delivers.
type latencyHistogram struct {
	counts [histogramBuckets + 1]atomic.Uint64
	max    atomic.Int64
}

func (h *latencyHistogram) record(d time.Duration) {
	h.counts[min(int(d/histogramBucket), histogramBuckets)].Add(1)
	for m := h.max.Load(); int64(d) > m && !h.max.CompareAndSwap(m, int64(d)); m = h.max.Load() {
	}
}

// quantile returns the upper edge of the bucket that holds quantile q.
func (h *latencyHistogram) quantile(q float64) time.Duration {
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	rank := uint64(q * float64(total))
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen > rank {
			return time.Duration(i+1) * histogramBucket
		}
	}
	return time.Duration(h.max.Load())
}

// realtimeResult is the outcome of one run at one rate.
type realtimeResult struct {
	rate                   int
	written                int
	writeElapsed           time.Duration
	clients                int // open when the run started
	expected, delivered    int64
	duplicates             int64
	slowCloses, otherEnded int
	p50, p95, p99, max     time.Duration
}

// achievedRate returns the changes per second written: the intervals
// between the first and the last commit over the time they took.
func (r realtimeResult) achievedRate() float64 {
	if r.written < 2 {
		return float64(r.written)
	}
	return float64(r.written-1) / r.writeElapsed.Seconds()
}

func (r realtimeResult) passed() bool {
	achieved := r.achievedRate()
	return r.delivered == r.expected && r.slowCloses == 0 && r.otherEnded == 0 &&
		r.p99 < realtimeP99Target && achieved >= 0.95*float64(r.rate)
}

// runRealtimeRate writes rate single-row transactions per second for d,
// waits for the clients to receive them and prints the result.
func runRealtimeRate(ctx context.Context, rig *realtimeRig, clients []*realtimeClient, rate int, d time.Duration) (realtimeResult, error) {
	prev := clients[0].round.Load()
	changes := rate * int(d/time.Second)
	round := newRealtimeRound(prev.base+int64(len(prev.commits)), changes, len(clients))
	clients[0].round.Store(round)
	open := openClients(clients)
	cpuStart := sampleCPU()
	writesStart, syscallsStart := rig.hub.WriteCounts()

	written, elapsed, err := writeChanges(ctx, rig.pool, round, rate)
	if err != nil {
		return realtimeResult{}, err
	}
	waitDelivered(round, clients, written)
	res := summarize(round, clients, open, rate, written, elapsed)
	printRealtimeResult(res, rig.hub.SlowClosed())
	cpuEnd := sampleCPU()
	fmt.Printf("  delivered %.0f messages/s from the first commit to the end of delivery\n", float64(res.delivered)/cpuEnd.at.Sub(cpuStart.at).Seconds())
	printCPU(cpuStart, cpuEnd)
	writes, syscalls := rig.hub.WriteCounts()
	if n := syscalls - syscallsStart; n > 0 {
		fmt.Printf("  hub writes: %d frames in %d system calls (%.2f frames per call)\n",
			writes-writesStart, n, float64(writes-writesStart)/float64(n))
	}
	return res, nil
}

func openClients(clients []*realtimeClient) map[int]bool {
	open := make(map[int]bool, len(clients))
	for _, c := range clients {
		if c.closeCode.Load() == 0 {
			open[c.index] = true
		}
	}
	return open
}

// writeChanges inserts one row per transaction on the round's schedule and
// stores the time each commit returned. A slow round trip delays the
// following inserts, so the achieved rate can fall below rate.
// NOTE: that time is taken up to one round trip after the server committed,
// so latencies read short by as much.
func writeChanges(ctx context.Context, pool *pgxpool.Pool, round *realtimeRound, rate int) (int, time.Duration, error) {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range round.commits {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		_, err := pool.Exec(ctx, `INSERT INTO bench_items VALUES ($1, 'x', 1, 1, '{}', now())`, round.base+int64(i))
		if err != nil {
			return i, time.Since(start), fmt.Errorf("inserting change %d: %w", round.base+int64(i), err)
		}
		round.commits[i].Store(time.Now().UnixNano())
	}
	return len(round.commits), time.Since(start), nil
}

// waitDelivered waits until every open client received every change, or
// realtimeDrain after the last commit.
func waitDelivered(round *realtimeRound, clients []*realtimeClient, written int) {
	deadline := time.Now().Add(realtimeDrain)
	for time.Now().Before(deadline) {
		done := true
		for _, c := range clients {
			if c.closeCode.Load() == 0 && int(round.received[c.index].Load()) < written {
				done = false
				break
			}
		}
		if done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func summarize(round *realtimeRound, clients []*realtimeClient, open map[int]bool, rate, written int, elapsed time.Duration) realtimeResult {
	res := realtimeResult{rate: rate, written: written, writeElapsed: elapsed, clients: len(open),
		expected: int64(written) * int64(len(open)), duplicates: round.duplicates.Load()}
	for _, c := range clients {
		if !open[c.index] {
			continue
		}
		res.delivered += int64(round.received[c.index].Load())
		switch code := c.closeCode.Load(); {
		case code == 4008:
			res.slowCloses++
		case code != 0:
			res.otherEnded++
		}
	}
	res.p50, res.p95, res.p99 = round.latency.quantile(0.50), round.latency.quantile(0.95), round.latency.quantile(0.99)
	res.max = time.Duration(round.latency.max.Load())
	return res
}

func printRealtimeResult(r realtimeResult, hubSlowClosed int64) {
	achieved := r.achievedRate()
	fmt.Printf("rate %d changes/s: wrote %d changes in %.1fs (%.1f/s), offering %.0f messages/s to %d clients\n",
		r.rate, r.written, r.writeElapsed.Seconds(), achieved, achieved*float64(r.clients), r.clients)
	fmt.Printf("  delivered %d of %d messages: %d missed, %d duplicate or out of order; clients closed with 4008: %d, otherwise ended: %d (hub total 4008: %d)\n",
		r.delivered, r.expected, r.expected-r.delivered, r.duplicates, r.slowCloses, r.otherEnded, hubSlowClosed)
	fmt.Printf("  commit to receipt: p50 %s, p95 %s, p99 %s, max %s; passed: %v\n",
		ms(r.p50), ms(r.p95), ms(r.p99), r.max.Round(100*time.Microsecond), r.passed())
}

func ms(d time.Duration) string {
	if d > histogramBuckets*histogramBucket {
		return "over 10 s"
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

// sweepRealtime runs -rate and then every higher rate of
// realtimeSweepRates, each for at most realtimeSweepStep, until a step
// fails, and prints the last rate that passed.
func sweepRealtime(ctx context.Context, rig *realtimeRig, clients []*realtimeClient, opts realtimeOptions) error {
	step := min(opts.duration, realtimeSweepStep)
	rates := []int{opts.rate}
	for _, r := range realtimeSweepRates {
		if r > opts.rate {
			rates = append(rates, r)
		}
	}
	last := 0
	for _, rate := range rates {
		res, err := runRealtimeRate(ctx, rig, clients, rate, step)
		if err != nil {
			return err
		}
		if !res.passed() {
			break
		}
		last = rate
	}
	if last == 0 {
		fmt.Printf("sweep: no rate passed (p99 under %s, every message delivered, no client closed, 95%% of the rate written)\n", realtimeP99Target)
		return nil
	}
	fmt.Printf("sweep: highest passing rate %d changes/s with %d clients (%d messages/s)\n", last, len(clients), last*len(clients))
	return nil
}

// cpuSample is this process's CPU time and the machine's busy and total
// CPU time from /proc/stat, in clock ticks.
type cpuSample struct {
	at               time.Time
	process          time.Duration
	busyTicks, ticks uint64
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		s.ticks += v
		if i != 3 && i != 4 { // idle and iowait
			s.busyTicks += v
		}
	}
	return s
}

// printCPU prints the cores this process and the whole machine (PostgreSQL
// and any other tenant included) kept busy between two samples.
func printCPU(from, to cpuSample) {
	wall := to.at.Sub(from.at).Seconds()
	cores := float64(runtime.NumCPU())
	machine := 0.0
	if to.ticks > from.ticks {
		machine = cores * float64(to.busyTicks-from.busyTicks) / float64(to.ticks-from.ticks)
	}
	fmt.Printf("  CPU from the first commit to the end of delivery (%.1fs): this process %.2f cores, whole machine %.2f of %.0f cores busy\n",
		wall, (to.process-from.process).Seconds()/wall, machine, cores)
}

// memorySample is the Go heap in use plus goroutine stacks, after a GC.
type memorySample struct {
	heap, stack, rss uint64
}

func measureMemory() memorySample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memorySample{heap: ms.HeapInuse, stack: ms.StackInuse, rss: residentBytes()}
}

// residentBytes reads the process's resident set size from /proc, or
// returns 0 where that file does not exist.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(fields[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// heapBySide sums the live heap allocated since MemProfileRate was set to 1,
// split by call stack. Allocations under net/http's server, melody or the
// hub count for the hub side. Those under the WebSocket dialer or this
// file's client code count for the client side, and the rest for neither.
func heapBySide() (hubSide, clientSide uint64) {
	runtime.GC() // the profile reflects the heap as of the last GC
	n, _ := runtime.MemProfile(nil, true)
	records := make([]runtime.MemProfileRecord, n+100)
	n, _ = runtime.MemProfile(records, true)
	for _, r := range records[:n] {
		switch allocationSide(r.Stack()) {
		case "hub":
			hubSide += uint64(r.InUseBytes())
		case "client":
			clientSide += uint64(r.InUseBytes())
		}
	}
	return hubSide, clientSide
}

func allocationSide(stack []uintptr) string {
	side := ""
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		switch {
		case strings.HasPrefix(f.Function, "net/http.(*conn)"), strings.HasPrefix(f.Function, "net/http.(*Server)"),
			strings.HasPrefix(f.Function, "github.com/olahol/melody"), strings.HasPrefix(f.Function, "github.com/civicbase/civicbase/hub"):
			return "hub"
		case strings.HasPrefix(f.Function, "github.com/gorilla/websocket.(*Dialer)"), strings.HasPrefix(f.Function, "main.connectRealtimeClient"),
			strings.HasPrefix(f.Function, "main.(*realtimeClient)"):
			side = "client"
		}
		if !more {
			return side
		}
	}
}

// printConnectionMemory prints the memory of n idle subscribed connections.
// Heap is split by allocation site. Stacks are split by time: dialed is
// taken once every session runs on the hub and before the clients' read
// loops start.
func printConnectionMemory(before, dialed, idle memorySample, hubHeap, clientHeap uint64, n int) {
	per := func(b uint64) float64 { return float64(b) / float64(n) / 1024 }
	heap, stack := sub(idle.heap, before.heap), sub(idle.stack, before.stack)
	hubStack, clientStack := sub(dialed.stack, before.stack), sub(idle.stack, dialed.stack)
	fmt.Printf("memory per idle connection, hub and client together (Go heap in use + stacks): %.1f KB (heap %.1f KB, stacks %.1f KB); RSS %.1f KB\n",
		per(heap+stack), per(heap), per(stack), per(sub(idle.rss, before.rss)))
	fmt.Printf("  hub side: %.1f KB (heap %.1f KB by allocation site, stacks %.1f KB)\n",
		per(hubHeap+hubStack), per(hubHeap), per(hubStack))
	fmt.Printf("  client side: %.1f KB (heap %.1f KB, stacks %.1f KB); heap attributed to neither: %.1f KB\n",
		per(clientHeap+clientStack), per(clientHeap), per(clientStack), per(sub(heap, hubHeap+clientHeap)))
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
