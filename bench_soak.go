package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/internal/pgcluster"
)

// soakSampleEvery is how often the soak reads the service's /metrics.
const soakSampleEvery = 15 * time.Second

type soakOptions struct {
	duration       time.Duration
	rate           int
	slowDelay      time.Duration
	goroutineSlack float64 // allowed growth of the max goroutine count, as a fraction
	heapSlack      float64 // allowed growth of the mean HeapInuse, as a fraction
}

func parseSoakFlags(args []string) (soakOptions, error) {
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	var o soakOptions
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long changes are written, at least 2m")
	fs.IntVar(&o.rate, "rate", 500, "changes per second, written as 10 transactions per second (60% inserts, 30% updates, 10% deletes)")
	fs.DurationVar(&o.slowDelay, "slow-delay", 2*time.Second, "how long the slow endpoint waits before it answers 204")
	fs.Float64Var(&o.goroutineSlack, "goroutine-tolerance", 0.10, "allowed growth of the max goroutine count from the first to the last minute, as a fraction")
	fs.Float64Var(&o.heapSlack, "heap-tolerance", 0.25, "allowed growth of the mean heap in use from the first to the last minute, as a fraction")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.duration < 2*time.Minute || o.rate < 10 || o.slowDelay <= 0 {
		return o, fmt.Errorf("invalid flags: -duration %s must be at least 2m, -rate %d at least 10, -slow-delay %s above 0", o.duration, o.rate, o.slowDelay)
	}
	return o, nil
}

// runSoakBench runs `civicbase serve` as a child process for the duration
// under a steady write load, with a healthy, an always failing (500) and a
// slow webhook endpoint and one realtime subscriber. Each minute it reports
// the child's goroutines, heap in use and RSS from its /metrics, and it fails
// when goroutines or heap grew from the first to the last minute by more
// than the tolerances.
func runSoakBench(ctx context.Context, args []string) error {
	opts, err := parseSoakFlags(args)
	if err != nil {
		return err
	}
	c, err := pgcluster.Start(context.WithoutCancel(ctx), pgcluster.Options{})
	if err != nil {
		return err
	}
	defer c.Remove(context.WithoutCancel(ctx))
	pool, _, err := benchDatabase(ctx, c, "soak")
	if err != nil {
		return err
	}
	defer pool.Close()

	endpoints, err := startSoakEndpoints(opts.slowDelay)
	if err != nil {
		return err
	}
	defer endpoints.close()
	svc, err := startSoakService(ctx, c.URL("soak"))
	if err != nil {
		return err
	}
	defer svc.stop()
	for _, e := range endpoints {
		if err := registerSoakEndpoint(ctx, svc.addr, e); err != nil {
			return err
		}
	}
	subscriber, err := startSoakSubscriber(ctx, svc.addr)
	if err != nil {
		return err
	}
	defer subscriber.close()

	fmt.Printf("soak: %d changes/s for %s, endpoints healthy, failing (500) and slow (%s), one realtime subscriber, GOMAXPROCS=%d; service log %s\n",
		opts.rate, opts.duration, opts.slowDelay, runtime.GOMAXPROCS(0), svc.logPath)
	minutes, err := soak(ctx, pool, svc, endpoints, subscriber, opts)
	if err != nil {
		return err
	}
	return judgeSoak(minutes, opts)
}

// soakEndpoint is a webhook receiver in this process. It counts its 2xx
// responses and, for the healthy one, the time from the event's commit to
// its arrival.
type soakEndpoint struct {
	name   string
	answer func() int
	srv    *http.Server
	url    string

	delivered atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration
}

type soakEndpoints []*soakEndpoint

func startSoakEndpoints(slowDelay time.Duration) (soakEndpoints, error) {
	eps := soakEndpoints{
		{name: "healthy", answer: func() int { return http.StatusNoContent }},
		{name: "failing", answer: func() int { return http.StatusInternalServerError }},
		{name: "slow", answer: func() int { time.Sleep(slowDelay); return http.StatusNoContent }},
	}
	for _, e := range eps {
		r, err := startBenchReceiver()
		if err != nil {
			eps.close()
			return nil, err
		}
		r.srv.Handler = http.HandlerFunc(e.serve)
		e.srv, e.url = r.srv, r.url
	}
	return eps, nil
}

func (e *soakEndpoint) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	code := e.answer()
	if code < 300 {
		e.delivered.Add(1)
		var event struct {
			CommitTime time.Time `json:"commitTime"`
		}
		if json.Unmarshal(body, &event) == nil && !event.CommitTime.IsZero() {
			e.mu.Lock()
			e.latencies = append(e.latencies, time.Since(event.CommitTime))
			e.mu.Unlock()
		}
	}
	w.WriteHeader(code)
}

// takeLatencies returns the latencies recorded since the last call.
func (e *soakEndpoint) takeLatencies() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.latencies
	e.latencies = nil
	return l
}

func (eps soakEndpoints) close() {
	for _, e := range eps {
		if e.srv != nil {
			_ = e.srv.Close()
		}
	}
}

// soakService is the `civicbase serve` child process.
type soakService struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	done    chan error
}

func startSoakService(ctx context.Context, dbURL string) (*soakService, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program's path to run it as the service: %w", err)
	}
	dir, err := os.MkdirTemp("", "civicbase-soak-")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "civicbase.yaml")
	if err := os.WriteFile(cfgPath, []byte("tables:\n  - name: bench_items\nslot: soak_slot\n"), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "service.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child keeps its own descriptor
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}

	s := &soakService{addr: addr, logPath: logFile.Name(), done: make(chan error, 1)}
	s.cmd = exec.Command(exe, "serve")
	s.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "CIVICBASE_ADMIN_TOKEN="+realtimeToken,
		"CIVICBASE_ADDR="+addr, "CIVICBASE_DEV=true", "CIVICBASE_CONFIG="+cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the service: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// freeLoopbackAddr returns a loopback address whose port was free a moment
// ago. Should another process take it first, the service fails to start
// and its log reports it.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port for the service: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (s *soakService) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("the service exited during start-up (%v); see %s", err, s.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + s.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("the service was not ready within a minute; see %s", s.logPath)
}

// stop sends SIGTERM and waits for the child, killing it after 30 s.
func (s *soakService) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func registerSoakEndpoint(ctx context.Context, addr string, e *soakEndpoint) error {
	body, _ := json.Marshal(map[string]any{"url": e.url, "events": []string{"*"}, "description": e.name,
		"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/webhooks", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+realtimeToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("registering the %s endpoint: %w", e.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		reply, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("registering the %s endpoint: status %d: %s", e.name, resp.StatusCode, reply)
	}
	return nil
}

// soakSubscriber is one realtime session subscribed to the bench model that
// reads as fast as it can.
type soakSubscriber struct {
	conn     *websocket.Conn
	received atomic.Int64
	done     chan struct{}
	err      error // set before done is closed
}

func startSoakSubscriber(ctx context.Context, addr string) (*soakSubscriber, error) {
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr+"/v1/realtime", nil)
	if err != nil {
		return nil, fmt.Errorf("dialing the realtime endpoint: %w", err)
	}
	if err := handshakeRealtime(conn, "BenchItem"); err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &soakSubscriber{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				s.err = err
				return
			}
			s.received.Add(1)
		}
	}()
	return s, nil
}

func (s *soakSubscriber) close() {
	_ = s.conn.Close()
	<-s.done
}

// soakMinute aggregates one minute of samples.
type soakMinute struct {
	changes     int64
	goroutines  float64 // max
	heapSum     float64
	heapMax     float64
	rssMax      float64
	samples     int
	delivered   []int64 // per endpoint
	pending     []int64 // per endpoint, at the end of the minute
	p50, p99    time.Duration
	realtime    int64
	sampleError error
}

func (m *soakMinute) heapMean() float64 { return m.heapSum / float64(max(m.samples, 1)) }

// soak writes changes at opts.rate until opts.duration has passed, and
// returns one aggregate per minute.
func soak(ctx context.Context, pool *pgxpool.Pool, svc *soakService, eps soakEndpoints, sub *soakSubscriber, opts soakOptions) ([]*soakMinute, error) {
	// Sampling and the last minute's queries run past the write phase, so
	// only the writer gets the deadline.
	writeCtx, cancel := context.WithTimeout(ctx, opts.duration)
	defer cancel()
	var written atomic.Int64
	writeErr := make(chan error, 1)
	go func() { writeErr <- writeSoakChanges(writeCtx, pool, opts.rate, &written) }()

	printSoakHeader(eps)
	var minutes []*soakMinute
	sample := time.NewTicker(soakSampleEvery)
	defer sample.Stop()
	minuteEnd := time.Now().Add(time.Minute)
	current := newSoakMinute(len(eps))
	var last soakCounters
	closeMinute := func() {
		now := readSoakCounters(&written, eps, sub)
		current.finish(ctx, pool, now.minus(last), eps)
		last = now
		minutes = append(minutes, current)
		printSoakMinute(len(minutes), current, eps)
		current = newSoakMinute(len(eps))
	}
	for {
		select {
		case err := <-writeErr:
			// The writer stops at the deadline, within a sample of the end
			// of the last minute.
			if current.samples > 0 {
				current.add(scrapeSoakMetrics(ctx, svc.addr))
				closeMinute()
			}
			return minutes, err
		case err := <-svc.done:
			svc.done <- err
			return minutes, fmt.Errorf("the service exited during the soak (%v); see %s", err, svc.logPath)
		case <-sample.C:
		}
		current.add(scrapeSoakMetrics(ctx, svc.addr))
		if time.Now().Before(minuteEnd.Add(-soakSampleEvery / 2)) {
			continue
		}
		closeMinute()
		minuteEnd = minuteEnd.Add(time.Minute)
	}
}

func newSoakMinute(endpoints int) *soakMinute {
	return &soakMinute{delivered: make([]int64, endpoints), pending: make([]int64, endpoints)}
}

// soakCounters are cumulative counts at one moment.
type soakCounters struct {
	changes   int64
	delivered []int64
	realtime  int64
}

func readSoakCounters(written *atomic.Int64, eps soakEndpoints, sub *soakSubscriber) soakCounters {
	c := soakCounters{changes: written.Load(), realtime: sub.received.Load()}
	for _, e := range eps {
		c.delivered = append(c.delivered, e.delivered.Load())
	}
	return c
}

func (c soakCounters) minus(prev soakCounters) soakCounters {
	d := soakCounters{changes: c.changes - prev.changes, realtime: c.realtime - prev.realtime}
	for i, n := range c.delivered {
		if i < len(prev.delivered) {
			n -= prev.delivered[i]
		}
		d.delivered = append(d.delivered, n)
	}
	return d
}

// soakSample is one reading of the service's /metrics.
type soakSample struct {
	goroutines, heapInuse, rss float64
	err                        error
}

func scrapeSoakMetrics(ctx context.Context, addr string) soakSample {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return soakSample{err: err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return soakSample{err: fmt.Errorf("reading /metrics: %w", err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return soakSample{err: fmt.Errorf("reading /metrics: %w", err)}
	}
	values := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			values[name] = v
		}
	}
	s := soakSample{goroutines: values["go_goroutines"], heapInuse: values["go_memstats_heap_inuse_bytes"],
		rss: values["process_resident_memory_bytes"]}
	if s.goroutines == 0 || s.heapInuse == 0 || s.rss == 0 {
		s.err = errors.New("/metrics lacks go_goroutines, go_memstats_heap_inuse_bytes or process_resident_memory_bytes")
	}
	return s
}

func (m *soakMinute) add(s soakSample) {
	if s.err != nil {
		m.sampleError = s.err
		return
	}
	m.samples++
	m.goroutines = max(m.goroutines, s.goroutines)
	m.heapSum += s.heapInuse
	m.heapMax = max(m.heapMax, s.heapInuse)
	m.rssMax = max(m.rssMax, s.rss)
}

// finish records the minute's counts, the healthy endpoint's latency
// percentiles and the deliveries pending per endpoint.
func (m *soakMinute) finish(ctx context.Context, pool *pgxpool.Pool, counts soakCounters, eps soakEndpoints) {
	m.changes, m.realtime = counts.changes, counts.realtime
	copy(m.delivered, counts.delivered)
	lat := eps[0].takeLatencies()
	if len(lat) > 0 {
		slices.Sort(lat)
		m.p50, m.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	for i, e := range eps {
		err := pool.QueryRow(ctx, `SELECT count(*) FROM civicbase.deliveries d JOIN civicbase.webhooks w ON w.id = d.webhook_id
			WHERE w.description = $1 AND d.status = 'pending'`, e.name).Scan(&m.pending[i])
		if err != nil {
			m.pending[i] = -1
		}
	}
}

// writeSoakChanges writes rate changes per second in 10 transactions per
// second until ctx ends. Each transaction inserts 60% of its rows, updates
// 30% (rows the previous transaction inserted) and deletes 10% (rows
// inserted ten transactions before).
func writeSoakChanges(ctx context.Context, pool *pgxpool.Pool, rate int, written *atomic.Int64) error {
	perTx := rate / 10
	inserts, updates := perTx*6/10, perTx*3/10
	deletes := perTx - inserts - updates
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for k := int64(0); ; k++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		base := k * int64(inserts)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO bench_items SELECT g, 'item ' || g, 1, 9.99, '{a,b}', now()
				FROM generate_series($1::bigint, $2::bigint) g`, base, base+int64(inserts)-1); err != nil {
				return err
			}
			if k == 0 {
				return nil
			}
			prev := base - int64(inserts)
			if _, err := tx.Exec(ctx, `UPDATE bench_items SET qty = qty + 1, updated_at = now() WHERE id BETWEEN $1 AND $2`,
				prev, prev+int64(updates)-1); err != nil {
				return err
			}
			if k < 10 {
				return nil
			}
			old := base - 10*int64(inserts)
			_, err := tx.Exec(ctx, `DELETE FROM bench_items WHERE id BETWEEN $1 AND $2`, old, old+int64(deletes)-1)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("writing soak changes: %w", err)
		}
		n := inserts
		if k > 0 {
			n += updates
		}
		if k >= 10 {
			n += deletes
		}
		written.Add(int64(n))
	}
}

func printSoakHeader(eps soakEndpoints) {
	fmt.Printf("%6s %9s %10s %13s %12s %11s", "minute", "changes", "goroutines", "heap mean MB", "heap max MB", "RSS max MB")
	for _, e := range eps {
		fmt.Printf(" %17s", e.name+" 2xx/pending")
	}
	fmt.Printf(" %22s %9s\n", "healthy p50/p99 ms", "realtime")
}

func printSoakMinute(n int, m *soakMinute, eps soakEndpoints) {
	fmt.Printf("%6d %9d %10.0f %13.1f %12.1f %11.1f", n, m.changes, m.goroutines, m.heapMean()/(1<<20), m.heapMax/(1<<20), m.rssMax/(1<<20))
	for i := range eps {
		fmt.Printf(" %17s", fmt.Sprintf("%d/%d", m.delivered[i], m.pending[i]))
	}
	fmt.Printf(" %22s %9d\n", ms(m.p50)+"/"+ms(m.p99), m.realtime)
	if m.sampleError != nil {
		fmt.Printf("       a sample failed: %v\n", m.sampleError)
	}
}

// judgeSoak compares the first and the last minute.
func judgeSoak(minutes []*soakMinute, opts soakOptions) error {
	if len(minutes) < 2 {
		return fmt.Errorf("the soak recorded %d whole minutes; it needs at least 2", len(minutes))
	}
	first, last := minutes[0], minutes[len(minutes)-1]
	if first.samples == 0 || last.samples == 0 {
		return errors.New("no /metrics sample in the first or the last minute")
	}
	goroutineGrowth := last.goroutines/first.goroutines - 1
	heapGrowth := last.heapMean()/first.heapMean() - 1
	fmt.Printf("first to last minute: goroutines %.0f → %.0f (%+.1f%%, tolerance %+.0f%%), heap in use %.1f → %.1f MB (%+.1f%%, tolerance %+.0f%%), RSS %.1f → %.1f MB\n",
		first.goroutines, last.goroutines, 100*goroutineGrowth, 100*opts.goroutineSlack,
		first.heapMean()/(1<<20), last.heapMean()/(1<<20), 100*heapGrowth, 100*opts.heapSlack,
		first.rssMax/(1<<20), last.rssMax/(1<<20))
	var errs []error
	if goroutineGrowth > opts.goroutineSlack {
		errs = append(errs, fmt.Errorf("goroutines grew by %.1f%%, more than the %.0f%% tolerance", 100*goroutineGrowth, 100*opts.goroutineSlack))
	}
	if heapGrowth > opts.heapSlack {
		errs = append(errs, fmt.Errorf("heap in use grew by %.1f%%, more than the %.0f%% tolerance", 100*heapGrowth, 100*opts.heapSlack))
	}
	return errors.Join(errs...)
}
