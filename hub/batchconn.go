package hub

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// batcher gathers the writes of many WebSocket connections into fewer system
// calls. A connection's writes are copied to its buffer, and the connection
// joins a queue. A few flusher goroutines take connections from the queue and
// write each buffer with one non-blocking system call. Frames that arrive
// while a connection waits its turn join the same buffer, so the busier the
// hub, the more frames each system call carries. On an idle hub a frame goes
// out as soon as a flusher is free.
//
// A socket that cannot take a whole buffer takes its connection out of the
// flushers' hands: a goroutine of that connection finishes the write under
// the connection's write deadline, so a slow client never holds up the
// others. Each connection buffers at most limit bytes; past it, Write waits
// for room, so the hub's slow-client handling gets the same back pressure as
// with a plain socket.
type batcher struct {
	limit int

	mu      sync.Mutex
	ready   sync.Cond
	queue   []*batchConn
	head    int
	stopped bool
	wg      sync.WaitGroup

	writes   atomic.Int64 // calls to Write: one per frame for small frames
	syscalls atomic.Int64 // write system calls, the blocking ones included
}

// batchLimit is how many bytes a connection may buffer before Write waits.
const batchLimit = 64 << 10

// closeFlushWait bounds how long Close waits for buffered bytes, such as a
// close frame, to reach the socket.
const closeFlushWait = time.Second

// newBatcher starts its flusher goroutines; stop ends them.
func newBatcher(limit int) *batcher {
	b := &batcher{limit: limit}
	b.ready.L = &b.mu
	n := runtime.GOMAXPROCS(0)
	b.wg.Add(n)
	for range n {
		go b.run()
	}
	return b
}

// stop ends the flushers once the queue is empty and waits for them.
func (b *batcher) stop() {
	b.mu.Lock()
	b.stopped = true
	b.ready.Broadcast()
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *batcher) run() {
	defer b.wg.Done()
	for {
		c, ok := b.next()
		if !ok {
			return
		}
		c.flush()
	}
}

func (b *batcher) push(c *batchConn) {
	b.mu.Lock()
	b.queue = append(b.queue, c)
	b.ready.Signal()
	b.mu.Unlock()
}

func (b *batcher) next() (*batchConn, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.head == len(b.queue) {
		if b.stopped {
			return nil, false
		}
		b.ready.Wait()
	}
	c := b.queue[b.head]
	b.queue[b.head] = nil
	b.head++
	switch {
	case b.head == len(b.queue):
		b.queue, b.head = b.queue[:0], 0
	case b.head > 1024 && b.head > len(b.queue)/2:
		n := copy(b.queue, b.queue[b.head:])
		clear(b.queue[n:])
		b.queue, b.head = b.queue[:n], 0
	}
	return c, true
}

// wrap returns conn with its writes batched, or conn itself when it has no
// file descriptor to write to without blocking.
func (b *batcher) wrap(conn net.Conn) net.Conn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return conn
	}
	return &batchConn{Conn: conn, raw: raw, b: b}
}

// hijacker hands melody's upgrader a connection whose writes b batches.
type hijacker struct {
	http.ResponseWriter
	b *batcher
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return h.b.wrap(conn), brw, nil
}

func (h hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// connState is the party that may write a batchConn's buffer to its socket.
// Only one party writes at a time, so the bytes stay in order.
type connState uint8

const (
	connIdle     connState = iota // nothing buffered and no write running
	connQueued                    // in the batcher's queue
	connWriting                   // a flusher is writing
	connDraining                  // the connection's own goroutine is writing
)

// batchConn is a connection whose writes a batcher sends. Reads go straight
// to the connection.
type batchConn struct {
	net.Conn
	raw syscall.RawConn
	b   *batcher

	mu       sync.Mutex
	buf      []byte
	state    connState
	err      error // the first write error; every later Write returns it
	closed   bool
	deadline time.Time
	// moved, when not nil, is closed the next time the buffer is handed
	// to the socket or the connection fails, to wake waiters for room.
	moved chan struct{}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if b == nil || cap(b) > 4*batchLimit {
		return
	}
	b = b[:0]
	bufPool.Put(&b)
}

// Write buffers p for a flusher. It waits while the buffer holds limit bytes
// or more, until the write deadline.
func (c *batchConn) Write(p []byte) (int, error) {
	c.b.writes.Add(1)
	c.mu.Lock()
	for {
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, err
		}
		if len(c.buf) == 0 || len(c.buf)+len(p) <= c.b.limit {
			break
		}
		moved, deadline := c.movedLocked(), c.deadline
		c.mu.Unlock()
		if !waitUntil(moved, deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
	}
	if c.buf == nil {
		c.buf = getBuf()
	}
	c.buf = append(c.buf, p...)
	if c.state == connIdle {
		c.state = connQueued
		c.b.push(c)
	}
	c.mu.Unlock()
	return len(p), nil
}

func waitUntil(ch <-chan struct{}, deadline time.Time) bool {
	if deadline.IsZero() {
		<-ch
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

func (c *batchConn) movedLocked() <-chan struct{} {
	if c.moved == nil {
		c.moved = make(chan struct{})
	}
	return c.moved
}

func (c *batchConn) signalMovedLocked() {
	if c.moved != nil {
		close(c.moved)
		c.moved = nil
	}
}

// SetWriteDeadline sets the deadline of Write's wait for room and of the
// blocking writes of a connection whose socket is full.
func (c *batchConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

// SetDeadline sets the read deadline on the connection and the write
// deadline here.
func (c *batchConn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

// flush runs on a flusher: it writes the buffer with one non-blocking system
// call and hands what the socket did not take to drain.
func (c *batchConn) flush() {
	c.mu.Lock()
	if c.state != connQueued {
		c.mu.Unlock()
		return
	}
	if c.err != nil {
		c.state = connIdle
		c.mu.Unlock()
		return
	}
	data := c.buf
	c.buf = nil
	c.state = connWriting
	c.signalMovedLocked()
	c.mu.Unlock()

	n, err := c.writeNow(data)
	c.b.syscalls.Add(1)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signalMovedLocked()
	switch {
	case err != nil:
		putBuf(data)
		c.failLocked(err)
	case n < len(data):
		// The socket is full. The rest goes before whatever was buffered
		// meanwhile.
		rest := make([]byte, 0, len(data)-n+len(c.buf))
		rest = append(append(rest, data[n:]...), c.buf...)
		putBuf(data)
		putBuf(c.buf)
		c.buf = rest
		c.state = connDraining
		go c.drain()
	default:
		putBuf(data)
		if len(c.buf) > 0 {
			c.state = connQueued
			c.b.push(c)
		} else {
			c.state = connIdle
		}
	}
}

// writeNow writes p without waiting for the socket to have room and returns
// how much it took.
func (c *batchConn) writeNow(p []byte) (int, error) {
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			if m > 0 {
				n += m
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if errors.Is(err, syscall.EAGAIN) || m <= 0 {
				if err != nil && !errors.Is(err, syscall.EAGAIN) {
					werr = err
				}
				break
			}
		}
		return true
	})
	if werr == nil {
		werr = err
	}
	return n, werr
}

// drain writes the buffer with blocking writes under the write deadline until
// it is empty, then gives the connection back to the flushers.
func (c *batchConn) drain() {
	for {
		c.mu.Lock()
		if c.err != nil {
			c.state = connIdle
			c.mu.Unlock()
			return
		}
		if len(c.buf) == 0 {
			c.state = connIdle
			c.signalMovedLocked()
			c.mu.Unlock()
			return
		}
		data, deadline := c.buf, c.deadline
		c.buf = nil
		c.signalMovedLocked()
		c.mu.Unlock()

		_ = c.Conn.SetWriteDeadline(deadline)
		_, err := c.Conn.Write(data)
		c.b.syscalls.Add(1)
		// Flushers write without a deadline; one left behind would fail
		// their writes once it passed.
		_ = c.Conn.SetWriteDeadline(time.Time{})
		putBuf(data)
		if err != nil {
			c.mu.Lock()
			c.failLocked(err)
			c.state = connIdle
			c.mu.Unlock()
			return
		}
	}
}

func (c *batchConn) failLocked(err error) {
	if c.err == nil {
		c.err = err
	}
	putBuf(c.buf)
	c.buf = nil
	if c.state != connDraining {
		c.state = connIdle
	}
	c.signalMovedLocked()
}

// Close gives buffered bytes, such as a close frame, up to closeFlushWait to
// reach the socket, then closes the connection.
func (c *batchConn) Close() error {
	deadline := time.Now().Add(closeFlushWait)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	for c.err == nil && (len(c.buf) > 0 || c.state != connIdle) {
		moved := c.movedLocked()
		c.mu.Unlock()
		ok := waitUntil(moved, deadline)
		c.mu.Lock()
		if !ok {
			break
		}
	}
	if c.err == nil {
		c.err = net.ErrClosed
	}
	putBuf(c.buf)
	c.buf = nil
	c.signalMovedLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}
