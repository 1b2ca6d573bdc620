package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	// clientsFor and model, when set, make this process the client
	// process of a running benchmark instead.
	clientsFor string
	model      string
	// baseline runs the plain TCP baseline after the hub's run.
	// baselineFor, when set, makes this process the baseline's client
	// process, reading frames of baselineFrame bytes.
	baseline      bool
	baselineFor   string
	baselineFrame int
}

func parseRealtimeFlags(args []string) (realtimeOptions, error) {
	fs := flag.NewFlagSet("bench realtime", flag.ContinueOnError)
	var o realtimeOptions
	fs.IntVar(&o.clients, "clients", 10_000, "WebSocket clients subscribed to the bench model")
	fs.IntVar(&o.rate, "rate", 20, "changes per second, each a single-row INSERT transaction")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long changes are written; with -sweep, per step, at most 10s")
	fs.BoolVar(&o.sweep, "sweep", false, "raise the rate step by step from -rate until a step fails (p99 over 250ms, a missed message or a closed client), and report the last rate that passed")
	fs.StringVar(&o.clientsFor, "clients-for", "", "internal: run as the client process for the hub at this URL")
	fs.StringVar(&o.model, "model", "", "internal: the model the client process subscribes to")
	fs.BoolVar(&o.baseline, "baseline", false, "after the hub's run, write frames of the same size at the same rate over plain TCP to as many connections, the ceiling of this machine without the hub")
	fs.StringVar(&o.baselineFor, "tcp-baseline-for", "", "internal: run as the baseline's client process for this address")
	fs.IntVar(&o.baselineFrame, "baseline-frame", 0, "internal: the baseline's frame size in bytes")
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
	if opts.clientsFor != "" {
		return runRealtimeClients(ctx, opts.clientsFor, opts.model, opts.clients)
	}
	if opts.baselineFor != "" {
		return runTCPBaselineClients(ctx, opts.baselineFor, opts.clients, opts.baselineFrame)
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

	fmt.Printf("realtime benchmark: %d clients on 127.0.0.1 subscribed to model %s, GOMAXPROCS=%d, clients in a child process\n",
		opts.clients, rig.model, runtime.GOMAXPROCS(0))
	before := measureMemory()
	clients, err := startClientProcess(ctx, rig, opts.clients)
	if err != nil {
		return err
	}
	defer clients.close()
	time.Sleep(time.Second) // let the last replies go out, so sessions are idle
	printConnectionMemory(before, measureMemory(), clients.connected)
	if clients.connected.Failed > 0 {
		return fmt.Errorf("only %d of %d clients connected, the first failure: %s",
			clients.connected.Connected, opts.clients, clients.connected.FirstError)
	}
	if opts.sweep {
		return sweepRealtime(ctx, rig, clients, opts)
	}
	res, err := runRealtimeRate(ctx, rig, clients, opts.rate, opts.duration)
	if err != nil || !opts.baseline {
		return err
	}
	// The hub's sessions must end first, so that the baseline's
	// connections fit in the file descriptor limit.
	clients.close()
	rig.hub.Close()
	return runTCPBaseline(ctx, opts.clients, opts.rate, int(res.messageBytes), opts.duration)
}

// ensureFileLimit raises RLIMIT_NOFILE so that one end of every loopback
// connection fits: the hub's process and the client process each hold one.
// Raising the hard limit needs CAP_SYS_RESOURCE; without it the soft limit
// goes up to the hard one.
func ensureFileLimit(clients int) error {
	need := uint64(clients + realtimeFileReserve)
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
		return fmt.Errorf("%d clients need %d file descriptors per process (one per connection, plus %d), but the hard limit is %d; "+
			"run with -clients %d or less, or raise the hard limit (ulimit -Hn)",
			clients, need, realtimeFileReserve, lim.Max, lim.Max-realtimeFileReserve)
	}
	return nil
}

// clientProcess is the child process that runs the benchmark's clients.
type clientProcess struct {
	cmd       *exec.Cmd
	in        io.WriteCloser
	out       *json.Decoder
	connected clientReport
}

// startClientProcess starts this program as the client process, connects n
// clients to the rig's hub and waits until they are subscribed.
func startClientProcess(ctx context.Context, rig *realtimeRig, n int) (*clientProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to start the client process: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, "bench", "realtime", "-clients", strconv.Itoa(n), "-clients-for", rig.url, "-model", rig.model)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the client process: %w", err)
	}
	p := &clientProcess{cmd: cmd, in: in, out: json.NewDecoder(out)}
	if err := p.read("connected", &p.connected); err != nil {
		p.close()
		return nil, err
	}
	fmt.Printf("connected %d of %d clients in %.1fs (authenticate + subscribe each, %d at a time)\n",
		p.connected.Connected, n, p.connected.DialSeconds, realtimeDialers)
	if p.connected.Connected == 0 {
		p.close()
		return nil, fmt.Errorf("no client connected: %s", p.connected.FirstError)
	}
	return p, nil
}

// read decodes the client process's next report, which must be of type want.
func (p *clientProcess) read(want string, r *clientReport) error {
	if err := p.out.Decode(r); err != nil {
		return fmt.Errorf("reading the client process's %s report: %w", want, err)
	}
	if r.Type != want {
		return fmt.Errorf("the client process sent a %q report, expected %q", r.Type, want)
	}
	return nil
}

func (p *clientProcess) send(format string, args ...any) error {
	_, err := fmt.Fprintf(p.in, format+"\n", args...)
	if err != nil {
		return fmt.Errorf("writing to the client process: %w", err)
	}
	return nil
}

// close ends the client process's input, so it closes its connections and
// exits, and waits for it.
func (p *clientProcess) close() {
	_ = p.in.Close()
	_ = p.cmd.Wait()
}

// realtimeRig is the server side: the reader writing the event store and
// the hub serving it on 127.0.0.1.
type realtimeRig struct {
	pool  *pgxpool.Pool
	hub   *hub.Hub
	model string
	url   string
	stop  func()
	// nextSeq is the primary key of the next bench row.
	nextSeq int64
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
	messageBytes           float64 // the mean size of a delivered message
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
func runRealtimeRate(ctx context.Context, rig *realtimeRig, clients *clientProcess, rate int, d time.Duration) (realtimeResult, error) {
	changes := rate * int(d/time.Second)
	base := rig.nextSeq
	rig.nextSeq += int64(changes)
	if err := clients.send("round %d %d", base, changes); err != nil {
		return realtimeResult{}, err
	}
	var ready clientReport
	if err := clients.read("ready", &ready); err != nil {
		return realtimeResult{}, err
	}
	cpuStart := sampleCPU()
	writesStart, syscallsStart := rig.hub.WriteCounts()

	written, elapsed, writeErr := writeChanges(ctx, rig.pool, clients, base, changes, rate)
	if err := clients.send("end %d", written); err != nil {
		return realtimeResult{}, err
	}
	var report clientReport
	if err := clients.read("result", &report); err != nil {
		return realtimeResult{}, err
	}
	cpuEnd := sampleCPU()
	if writeErr != nil {
		return realtimeResult{}, writeErr
	}
	res := summarize(report, rate, written, elapsed)
	printRealtimeResult(res, rig.hub.SlowClosed())
	fmt.Printf("  delivered %.0f messages/s from the first commit to the end of delivery, %.0f bytes each on average\n",
		float64(res.delivered)/cpuEnd.at.Sub(cpuStart.at).Seconds(), res.messageBytes)
	printCPU(cpuStart, cpuEnd, report.CPUSeconds)
	writes, syscalls := rig.hub.WriteCounts()
	if n := syscalls - syscallsStart; n > 0 {
		fmt.Printf("  hub writes: %d frames in %d system calls (%.2f frames per call)\n",
			writes-writesStart, n, float64(writes-writesStart)/float64(n))
	}
	return res, nil
}

// writeChanges inserts one row per transaction on a schedule of rate per
// second and sends the client process the time each commit returned. A slow
// round trip delays the following inserts, so the achieved rate can fall
// below rate.
// NOTE: that time is taken up to one round trip after the server committed,
// so latencies read short by as much.
func writeChanges(ctx context.Context, pool *pgxpool.Pool, clients *clientProcess, base int64, changes, rate int) (int, time.Duration, error) {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range changes {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		_, err := pool.Exec(ctx, `INSERT INTO bench_items VALUES ($1, 'x', 1, 1, '{}', now())`, base+int64(i))
		if err != nil {
			return i, time.Since(start), fmt.Errorf("inserting change %d: %w", base+int64(i), err)
		}
		if err := clients.send("commit %d %d", i, time.Now().UnixNano()); err != nil {
			return i + 1, time.Since(start), err
		}
	}
	return changes, time.Since(start), nil
}

func summarize(r clientReport, rate, written int, elapsed time.Duration) realtimeResult {
	res := realtimeResult{rate: rate, written: written, writeElapsed: elapsed, clients: r.Clients,
		expected: r.Expected, delivered: r.Delivered, duplicates: r.Duplicates,
		slowCloses: r.SlowCloses, otherEnded: r.OtherEnded}
	var h latencyHistogram
	for i, n := range r.Buckets {
		if i >= 0 && i < len(h.counts) {
			h.counts[i].Store(n)
		}
	}
	h.max.Store(r.MaxNanos)
	res.p50, res.p95, res.p99 = h.quantile(0.50), h.quantile(0.95), h.quantile(0.99)
	res.max = time.Duration(r.MaxNanos)
	if r.Delivered > 0 {
		res.messageBytes = float64(r.Bytes) / float64(r.Delivered)
	}
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
func sweepRealtime(ctx context.Context, rig *realtimeRig, clients *clientProcess, opts realtimeOptions) error {
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
	n := clients.connected.Connected
	fmt.Printf("sweep: highest passing rate %d changes/s with %d clients (%d messages/s)\n", last, n, last*n)
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

// printCPU prints the cores the hub's process, the client process and the
// whole machine (PostgreSQL and any other tenant included) kept busy between
// two samples.
func printCPU(from, to cpuSample, clientSeconds float64) {
	wall := to.at.Sub(from.at).Seconds()
	cores := float64(runtime.NumCPU())
	machine := 0.0
	if to.ticks > from.ticks {
		machine = cores * float64(to.busyTicks-from.busyTicks) / float64(to.ticks-from.ticks)
	}
	fmt.Printf("  CPU from the first commit to the end of delivery (%.1fs): hub process %.2f cores, client process %.2f, whole machine %.2f of %.0f cores busy\n",
		wall, (to.process-from.process).Seconds()/wall, clientSeconds/wall, machine, cores)
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

// printConnectionMemory prints the memory of the idle subscribed
// connections on the hub's side, measured in this process before and after
// they connected, and on the client side as the client process measured it.
func printConnectionMemory(before, idle memorySample, clients clientReport) {
	n := clients.Connected
	if n == 0 {
		return
	}
	per := func(b uint64) float64 { return float64(b) / float64(n) / 1024 }
	heap, stack := sub(idle.heap, before.heap), sub(idle.stack, before.stack)
	fmt.Printf("memory per idle connection, hub side (Go heap in use + goroutine stacks): %.1f KB (heap %.1f KB, stacks %.1f KB); RSS %.1f KB\n",
		per(heap+stack), per(heap), per(stack), per(sub(idle.rss, before.rss)))
	fmt.Printf("  client side, for comparison: %.1f KB (heap %.1f KB, stacks %.1f KB); RSS %.1f KB\n",
		(clients.HeapPerConn+clients.StackPerConn)/1024, clients.HeapPerConn/1024, clients.StackPerConn/1024, clients.RSSPerConn/1024)
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
