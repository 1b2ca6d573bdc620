package hub

import "context"

// catchUp is one run of a session's catch-up goroutine. Fan-out starts one
// when a session's SendBuffer is full instead of closing it: the session
// leaves the live stream and reads the event store at the pace its
// connection takes messages, then rejoins the live stream like a replay.
// The store is the buffer, so a burst costs a session no memory beyond one
// page of events and the messages queued to its connection.
type catchUp struct {
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed when the catch-up rejoins the live stream or ends.
	done chan struct{}
	// from is the id after which the catch-up reads the store.
	from string
}

// beginCatchUpLocked takes the session out of the live stream. Fan-out has
// queued or skipped every event up to servedUpTo, so the catch-up reads
// after it. c.mu must be held.
func (c *client) beginCatchUpLocked() *catchUp {
	ctx, cancel := context.WithCancel(context.Background())
	run := &catchUp{ctx: ctx, cancel: cancel, done: make(chan struct{}), from: c.servedUpTo}
	c.catchUp = run
	c.stopReplay = cancel
	c.replaying = true
	return run
}

// startCatchUp runs the catch-up goroutine of c. It returns at once, so
// fan-out can call it with h.mu held.
func (h *Hub) startCatchUp(c *client, run *catchUp) {
	h.log.Debug("session fell behind; catching up from the event store", "conn_id", c.id, "from", run.from)
	go func() {
		defer c.endCatchUp(run)
		h.readStore(run.ctx, c, nil, run.from, run.from)
	}()
}

// endCatchUp releases run when it ends without rejoining the live stream,
// because the session closed.
func (c *client) endCatchUp(run *catchUp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	run.cancel()
	if c.catchUp == run {
		close(run.done)
		c.catchUp = nil
	}
}

// waitCatchUp waits until the session's catch-up goroutine, if any, ends.
// The session must be stopped, so the catch-up is cancelled.
func (c *client) waitCatchUp() {
	c.mu.Lock()
	run := c.catchUp
	c.mu.Unlock()
	if run != nil {
		<-run.done
	}
}
