package main

import (
	"context"
	wire "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The realtime benchmark's baseline (-baseline) shows what this machine can
// do without the hub. The parent writes fixed-size frames over plain TCP on
// loopback, at the same rate and to as many connections, and a child
// process reads them. With no WebSocket framing, JSON, PostgreSQL or
// per-session goroutine, each frame costs one write system call, so its
// frames/s is a ceiling to read the hub's figures against.

// baselineReport is the JSON line the baseline's child process writes when
// its connections have ended.
type baselineReport struct {
	Connected  int            `json:"connected"`
	Frames     int64          `json:"frames"`
	Buckets    map[int]uint64 `json:"buckets"`
	MaxNanos   int64          `json:"maxNanos"`
	CPUSeconds float64        `json:"cpuSeconds"`
	FirstError string         `json:"firstError,omitempty"`
}

// runTCPBaseline writes rate frames per second of frameSize bytes to n
// loopback connections for d and prints what the child process received.
func runTCPBaseline(ctx context.Context, n, rate, frameSize int, d time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the baseline: %w", err)
	}
	defer ln.Close()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to start the baseline's client process: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, "bench", "realtime", "-clients", strconv.Itoa(n),
		"-tcp-baseline-for", ln.Addr().String(), "-baseline-frame", strconv.Itoa(frameSize))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the baseline's client process: %w", err)
	}
	defer func() { _ = cmd.Wait() }()

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for len(conns) < n {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accepting baseline connection %d of %d: %w", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}

	start := sampleCPU()
	events := writeBaselineFrames(conns, rate, frameSize, d)
	end := sampleCPU()
	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil

	var report baselineReport
	if err := json.NewDecoder(out).Decode(&report); err != nil {
		return fmt.Errorf("reading the baseline's client report: %w", err)
	}
	if report.FirstError != "" {
		return fmt.Errorf("baseline client process: %s", report.FirstError)
	}
	var h latencyHistogram
	for i, count := range report.Buckets {
		if i >= 0 && i < len(h.counts) {
			h.counts[i].Store(count)
		}
	}
	h.max.Store(report.MaxNanos)
	wall := end.at.Sub(start.at).Seconds()
	fmt.Printf("plain TCP baseline at %d frames/s per connection: %d rounds of one %d-byte frame to each of %d connections in %.1fs (%.1f rounds/s, %.0f frames/s)\n",
		rate, events, frameSize, n, wall, float64(events)/wall, float64(int64(events)*int64(n))/wall)
	fmt.Printf("  received %d of %d frames; send to receipt: p50 %s, p99 %s, max %s\n",
		report.Frames, int64(events)*int64(n), ms(h.quantile(0.50)), ms(h.quantile(0.99)),
		time.Duration(report.MaxNanos).Round(100*time.Microsecond))
	machine := 0.0
	if end.ticks > start.ticks {
		machine = float64(runtime.NumCPU()) * float64(end.busyTicks-start.busyTicks) / float64(end.ticks-start.ticks)
	}
	fmt.Printf("  CPU while writing (%.1fs): writing process %.2f cores, reading process %.2f, whole machine %.2f of %d cores busy\n",
		wall, (end.process-start.process).Seconds()/wall, report.CPUSeconds/wall, machine, runtime.NumCPU())
	return nil
}

// writeBaselineFrames writes one frame to every connection rate times a
// second for d, split among GOMAXPROCS goroutines, and returns how many
// rounds it wrote. Each frame starts with the Unix time in nanoseconds at
// which its round began. A round that runs late delays the next ones.
func writeBaselineFrames(conns []net.Conn, rate, frameSize int, d time.Duration) int {
	frame := make([]byte, frameSize)
	writers := runtime.GOMAXPROCS(0)
	chunk := (len(conns) + writers - 1) / writers
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	rounds := 0
	for ; time.Since(start) < d; rounds++ {
		if wait := time.Until(start.Add(time.Duration(rounds) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wire.LittleEndian.PutUint64(frame, uint64(time.Now().UnixNano()))
		var wg sync.WaitGroup
		for i := 0; i < len(conns); i += chunk {
			part := conns[i:min(i+chunk, len(conns))]
			wg.Go(func() {
				for _, c := range part {
					_, _ = c.Write(frame)
				}
			})
		}
		wg.Wait()
	}
	return rounds
}

// runTCPBaselineClients is the baseline's client process: it connects n
// times to addr, reads frames of frameSize bytes until the parent closes
// the connections, and writes a baselineReport to stdout.
func runTCPBaselineClients(ctx context.Context, addr string, n, frameSize int) error {
	if err := ensureFileLimit(n); err != nil {
		return err
	}
	var (
		latency   latencyHistogram
		frames    atomic.Int64
		readers   sync.WaitGroup
		mu        sync.Mutex
		firstErr  error
		connected atomic.Int64
	)

	next := atomic.Int64{}
	var dialers sync.WaitGroup
	for range realtimeDialers {
		dialers.Go(func() {
			var dialer net.Dialer
			for next.Add(1) <= int64(n) {
				c, err := dialer.DialContext(ctx, "tcp", addr)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("dialing %s: %w", addr, err)
					}
					mu.Unlock()
					continue
				}
				connected.Add(1)
				readers.Go(func() {
					defer c.Close()
					buf := make([]byte, frameSize)
					for {
						if _, err := io.ReadFull(c, buf); err != nil {
							return
						}
						sent := int64(wire.LittleEndian.Uint64(buf))
						latency.record(time.Duration(max(0, time.Now().UnixNano()-sent)))
						frames.Add(1)
					}
				})
			}
		})
	}
	dialers.Wait()

	cpuStart := processCPU()
	readers.Wait()

	report := baselineReport{Connected: int(connected.Load()), Frames: frames.Load(), Buckets: map[int]uint64{},
		MaxNanos: latency.max.Load(), CPUSeconds: (processCPU() - cpuStart).Seconds()}
	if firstErr != nil {
		report.FirstError = firstErr.Error()
	}
	for i := range latency.counts {
		if count := latency.counts[i].Load(); count > 0 {
			report.Buckets[i] = count
		}
	}
	return json.NewEncoder(os.Stdout).Encode(report)
}
