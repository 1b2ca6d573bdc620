package hub

import (
	"fmt"
	"slices"
)

// A session's messages are handled one at a time, in the order they
// arrive, so their replies come in that order too. melody reads frames,
// the pongs that keep a session open among them, only between calls of
// onMessage. So a message whose handling can wait long goes to a worker
// goroutine of the session. Such messages are a subscribe with since,
// whose replay lasts as long as the client takes to read it, and any
// message that must wait for room in the send buffer. Messages that arrive while the worker
// runs queue behind it. The worker returns when none is left, so an idle
// session has none.

// inbound is one frame from a client, parsed.
type inbound struct {
	msg clientMessage
	// invalid is the error message for a frame that is not a protocol
	// message, and empty for one that is.
	invalid string
}

// pendingLimit returns how many messages may wait for a session's worker:
// a subscribe for every subscription the session may have, and a few
// more. A client that sends more meanwhile is closed with 1008: waiting
// for room would stop the read loop, and with it the reading of pongs,
// so the session would end without a close frame once the pong wait
// passed.
func (c Config) pendingLimit() int { return c.MaxSubscriptions + 4 }

// offload queues in for the session's worker, starting the worker if
// none runs, when a worker runs or when handling in may wait long. It
// reports false when the read loop should handle in itself. A full queue
// closes the session.
func (h *Hub) offload(c *client, in inbound) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.stopped {
		return true
	}
	if !c.working && !c.mayWaitLocked(in) {
		return false
	}
	if in.isPing() && c.pingPendingLocked() {
		// Pongs carry nothing, so the queued ping's pong replies to
		// both, and pings through a long replay never fill the queue.
		return true
	}
	if len(c.pending) >= c.pendingLimit {
		c.closeLocked(closePolicyViolation, fmt.Sprintf(
			"more than %d messages sent while an earlier one waits; wait for its reply", c.pendingLimit))
		return true
	}
	start := !c.working
	c.queueLocked(in)
	if start {
		go h.work(c)
	}
	return true
}

// mayWaitLocked reports whether handling in may wait long: it is a
// subscribe with since, or the send buffer is full. c.mu must be held.
func (c *client) mayWaitLocked(in inbound) bool {
	replays := in.invalid == "" && in.msg.Type == "subscribe" && in.msg.Since != ""
	return replays || c.outstanding >= c.sendBuffer
}

// queueLocked adds in to the worker's queue and marks the worker as
// running. An unsubscribe of the subscription whose replay runs stops the
// replay at once, and is itself handled in its turn. c.mu must be held.
func (c *client) queueLocked(in inbound) {
	if !c.working {
		c.working = true
		c.workerDone = make(chan struct{})
	}
	if in.invalid == "" && in.msg.Type == "unsubscribe" && c.replaySub != nil && c.replaySub.id == in.msg.ID {
		c.replaySub.unsubscribed = true
	}
	c.pending = append(c.pending, in)
}

// isPing reports whether in is an application-level ping.
func (in inbound) isPing() bool { return in.invalid == "" && in.msg.Type == "ping" }

// pingPendingLocked reports whether a ping waits in the worker's queue.
// c.mu must be held.
func (c *client) pingPendingLocked() bool {
	return slices.ContainsFunc(c.pending, inbound.isPing)
}

// unsubscribePendingLocked reports whether an unsubscribe of id waits in
// the worker's queue. c.mu must be held.
func (c *client) unsubscribePendingLocked(id string) bool {
	for _, in := range c.pending {
		if in.invalid == "" && in.msg.Type == "unsubscribe" && in.msg.ID == id {
			return true
		}
	}
	return false
}

// work handles the session's queued messages in order and returns when
// none is left or the session is closing.
func (h *Hub) work(c *client) {
	for {
		in, ok := c.takePending()
		if !ok {
			return
		}
		h.handle(c, in)
	}
}

// takePending removes and returns the first queued message. When none is
// left or the session is closing, it drops the queue, marks the worker as
// ended and reports false.
func (c *client) takePending() (inbound, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 || c.closing || c.stopped {
		c.pending = nil
		c.working = false
		close(c.workerDone)
		return inbound{}, false
	}
	in := c.pending[0]
	c.pending[0] = inbound{}
	c.pending = c.pending[1:]
	return in, true
}

// waitWorker waits until the session's worker, if any, returns. The
// session must be stopped, so the worker handles nothing more.
func (c *client) waitWorker() {
	c.mu.Lock()
	done := c.workerDone
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}
