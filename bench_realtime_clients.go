package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The realtime benchmark's clients run in a child process of their own, so
// that the hub's process and theirs each need one file descriptor per
// connection rather than two. The parent drives the child over its stdin
// with one command per line, and the child replies to each with one JSON line
// on its stdout:
//
//	round <base> <changes>   start counting changes base..base+changes-1   → ready
//	commit <i> <unix ns>     change base+i committed at that time           (no reply)
//	end <written>            wait for delivery of the written changes       → result
//
// The child closes its connections and exits when its stdin ends.

// clientReport is one line the client process writes to its stdout.
type clientReport struct {
	Type string `json:"type"` // connected, ready or result

	// connected
	Connected    int     `json:"connected,omitempty"`
	Failed       int     `json:"failed,omitempty"`
	FirstError   string  `json:"firstError,omitempty"`
	DialSeconds  float64 `json:"dialSeconds,omitempty"`
	HeapPerConn  float64 `json:"heapPerConn,omitempty"`
	StackPerConn float64 `json:"stackPerConn,omitempty"`
	RSSPerConn   float64 `json:"rssPerConn,omitempty"`

	// result
	Clients    int            `json:"clients,omitempty"` // open when the round started
	Expected   int64          `json:"expected,omitempty"`
	Delivered  int64          `json:"delivered,omitempty"`
	Duplicates int64          `json:"duplicates,omitempty"`
	SlowCloses int            `json:"slowCloses,omitempty"`
	OtherEnded int            `json:"otherEnded,omitempty"`
	Buckets    map[int]uint64 `json:"buckets,omitempty"` // latency histogram, sparse
	MaxNanos   int64          `json:"maxNanos,omitempty"`
	CPUSeconds float64        `json:"cpuSeconds,omitempty"` // the client process's CPU during the round
	Bytes      int64          `json:"bytes,omitempty"`      // the size of the messages counted in Delivered
}

// runRealtimeClients is the client process: it connects n clients to url,
// subscribes them to model and serves the parent's commands.
func runRealtimeClients(ctx context.Context, url, model string, n int) error {
	if err := ensureFileLimit(n); err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	clients, report := connectRealtimeClients(ctx, url, model, n)
	defer closeRealtimeClients(clients)
	if err := out.Encode(report); err != nil {
		return err
	}
	if len(clients) == 0 {
		return nil
	}

	var round *realtimeRound
	var cpuStart time.Duration
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		args := make([]int64, len(fields))
		for i := 1; i < len(fields); i++ {
			v, err := strconv.ParseInt(fields[i], 10, 64)
			if err != nil {
				return fmt.Errorf("invalid command %q from the benchmark: %w", in.Text(), err)
			}
			args[i] = v
		}
		switch {
		case len(fields) == 3 && fields[0] == "round":
			round = newRealtimeRound(args[1], int(args[2]), len(clients))
			round.open = openClients(clients)
			for _, c := range clients {
				c.round.Store(round)
			}
			cpuStart = processCPU()
			if err := out.Encode(clientReport{Type: "ready"}); err != nil {
				return err
			}
		case len(fields) == 3 && fields[0] == "commit" && round != nil:
			round.commits[args[1]].Store(args[2])
		case len(fields) == 2 && fields[0] == "end" && round != nil:
			written := int(args[1])
			waitDelivered(round, clients, written)
			res := round.report(clients, written)
			res.CPUSeconds = (processCPU() - cpuStart).Seconds()
			if err := out.Encode(res); err != nil {
				return err
			}
		default:
			return fmt.Errorf("invalid command %q from the benchmark", in.Text())
		}
	}
	return in.Err()
}

// realtimeClient is one subscribed WebSocket connection. Its read loop
// records each change it receives in the current round.
type realtimeClient struct {
	index int
	conn  *websocket.Conn
	round atomic.Pointer[realtimeRound]
	// closeCode is the WebSocket close code the hub sent, or -1 after any
	// other read error; 0 while the connection is open.
	closeCode atomic.Int32
	lastSeq   int64
	buf       []byte
}

// connectRealtimeClients connects up to n clients, realtimeDialers at a
// time, and returns those that authenticated and subscribed, each with its
// read loop running, and the report of the connect phase.
func connectRealtimeClients(ctx context.Context, url, model string, n int) ([]*realtimeClient, clientReport) {
	before := measureMemory()
	start := time.Now()
	conns, failed, firstErr := dialAll(ctx, url, model, n)
	elapsed := time.Since(start)

	clients := make([]*realtimeClient, len(conns))
	round := newRealtimeRound(0, 0, len(conns))
	for i, conn := range conns {
		clients[i] = &realtimeClient{index: i, conn: conn, lastSeq: -1}
		clients[i].round.Store(round)
		go clients[i].read()
	}
	time.Sleep(time.Second) // let the read loops start and park
	idle := measureMemory()

	report := clientReport{Type: "connected", Connected: len(conns), Failed: failed, DialSeconds: elapsed.Seconds()}
	if firstErr != nil {
		report.FirstError = firstErr.Error()
	}
	if len(conns) > 0 {
		per := func(b uint64) float64 { return float64(b) / float64(len(conns)) }
		report.HeapPerConn = per(sub(idle.heap, before.heap))
		report.StackPerConn = per(sub(idle.stack, before.stack))
		report.RSSPerConn = per(sub(idle.rss, before.rss))
	}
	return clients, report
}

func dialAll(ctx context.Context, url, model string, n int) (conns []*websocket.Conn, failed int, firstErr error) {
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 512}
	var mu sync.Mutex
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range realtimeDialers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				conn, err := connectRealtimeClient(ctx, dialer, url, model)
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
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

// connectRealtimeClient dials the hub, authenticates with the admin token
// and subscribes to every event of model.
func connectRealtimeClient(ctx context.Context, dialer *websocket.Dialer, url, model string) (*websocket.Conn, error) {
	conn, _, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", url, err)
	}
	err = handshakeRealtime(conn, model)
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

// read receives messages until the connection ends, and records the receipt
// of each change of the current round.
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
			c.round.Load().record(c, seq, len(c.buf), received)
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

func openClients(clients []*realtimeClient) map[int]bool {
	open := make(map[int]bool, len(clients))
	for _, c := range clients {
		if c.closeCode.Load() == 0 {
			open[c.index] = true
		}
	}
	return open
}

// realtimeRound is one run at one rate: the changes with sequence numbers
// base to base+len(commits)-1, their commit times and what the clients
// received.
type realtimeRound struct {
	base    int64
	commits []atomic.Int64 // Unix ns taken when the commit returned, 0 before
	open    map[int]bool   // clients open when the round started
	// received counts, per client, the changes of this round it received
	// once and in order.
	received   []atomic.Int32
	duplicates atomic.Int64 // changes a client received again or out of order
	bytes      atomic.Int64 // the size of the changes counted in received
	latency    latencyHistogram

	// early holds the receipts of changes whose commit time had not
	// reached this process yet. Their latency is recorded at the end.
	earlyMu sync.Mutex
	early   []receipt
}

type receipt struct {
	index    int64
	received int64
}

func newRealtimeRound(base int64, changes, clients int) *realtimeRound {
	return &realtimeRound{base: base, commits: make([]atomic.Int64, changes), received: make([]atomic.Int32, clients)}
}

func (r *realtimeRound) record(c *realtimeClient, seq int64, size int, received time.Time) {
	i := seq - r.base
	if i < 0 || i >= int64(len(r.commits)) {
		return // a late change of an earlier round
	}
	if seq <= c.lastSeq {
		r.duplicates.Add(1)
		return
	}
	c.lastSeq = seq
	r.received[c.index].Add(1)
	r.bytes.Add(int64(size))
	commit := r.commits[i].Load()
	if commit == 0 {
		r.earlyMu.Lock()
		r.early = append(r.early, receipt{index: i, received: received.UnixNano()})
		r.earlyMu.Unlock()
		return
	}
	r.latency.record(time.Duration(max(0, received.UnixNano()-commit)))
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

// report counts what the round's open clients received.
func (r *realtimeRound) report(clients []*realtimeClient, written int) clientReport {
	r.earlyMu.Lock()
	for _, e := range r.early {
		r.latency.record(time.Duration(max(0, e.received-r.commits[e.index].Load())))
	}
	r.early = nil
	r.earlyMu.Unlock()

	res := clientReport{Type: "result", Clients: len(r.open), Expected: int64(written) * int64(len(r.open)),
		Duplicates: r.duplicates.Load(), Buckets: map[int]uint64{}, MaxNanos: r.latency.max.Load(), Bytes: r.bytes.Load()}
	for _, c := range clients {
		if !r.open[c.index] {
			continue
		}
		res.Delivered += int64(r.received[c.index].Load())
		switch code := c.closeCode.Load(); {
		case code == 4008:
			res.SlowCloses++
		case code != 0:
			res.OtherEnded++
		}
	}
	for i := range r.latency.counts {
		if n := r.latency.counts[i].Load(); n > 0 {
			res.Buckets[i] = n
		}
	}
	return res
}

// processCPU returns the CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
