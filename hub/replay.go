package hub

import (
	"context"

	"github.com/civicbase/civicbase/store"
)

// replayPage is how many events one store read of a replay or catch-up
// returns.
const replayPage = 500

// replay adds a subscription with since. The session leaves the live stream
// and reads the store from since, for all its subscriptions, until it
// reaches the hub's cursor. It rejoins the live stream in the critical
// section that checks the cursor, so no event falls between replay and live
// and none is sent twice. The subscribed reply marks the seam.
//
// The replay runs on the session's worker, so the session's later messages
// wait until it ends, except that an unsubscribe of sub stops it. A client
// that reads nothing for Config.StallTimeout is closed with 4008.
func (h *Hub) replay(c *client, sub *subscription, since string) {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	served, ok := h.beginReplay(c, sub, since, cancel)
	if !ok {
		return
	}
	h.readStore(ctx, c, sub, since, served)
}

// beginReplay takes the session out of the live stream and adds sub, after
// waiting for a running catch-up to end. It returns the id up to which the
// session's other subscriptions were served.
func (h *Hub) beginReplay(c *client, sub *subscription, since string, cancel context.CancelFunc) (string, bool) {
	for {
		served, catchUpDone, ok := h.tryBeginReplay(c, sub, since, cancel)
		if !ok || catchUpDone == nil {
			return served, ok
		}
		select {
		case <-catchUpDone:
		case <-c.done:
			return "", false
		}
	}
}

// tryBeginReplay does the work of beginReplay, or returns the done channel
// of the session's running catch-up without changing anything.
func (h *Hub) tryBeginReplay(c *client, sub *subscription, since string, cancel context.CancelFunc) (string, <-chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.closing {
		return "", nil, false
	}
	if c.catchUp != nil {
		return "", c.catchUp.done, true
	}

	// Fan-out has sent every event up to the cursor to this live session.
	served := max(h.cursor, c.servedUpTo)
	c.stopReplay = cancel
	c.replaying = true
	c.replaySub = sub
	sub.unsubscribed = c.unsubscribePendingLocked(sub.id)
	sub.from = since
	if c.resumeID == "" || since < c.resumeID {
		c.resumeID = since
	}
	c.subs[sub.id] = sub
	h.indexLocked(c, sub)
	return served, nil, true
}

// readStore queues the stored events after pos that the session wants,
// waiting while SendBuffer messages are outstanding, until it reaches the
// hub's cursor. Then the session rejoins the live stream. sub is the
// subscription that a replay adds, and nil for a catch-up. served is the id
// up to which the session's other subscriptions were served. Where the
// events cross a gap, the session gets resync_required.
func (h *Hub) readStore(ctx context.Context, c *client, sub *subscription, pos, served string) {
	for {
		if sub != nil && c.unsubscribed(sub) {
			// Up to served, only sub's events were left to send.
			pos = max(pos, served)
		}
		events, gaps, err := h.store.ListWithGaps(ctx, pos, replayPage)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Error("reading events for a session failed", "conn_id", c.id, "since", pos, "err", err)
				c.close(closeInternalError, "reading events failed; reconnect and resume")
			}
			return
		}
		for i := range events {
			for len(gaps) > 0 && gaps[0].ResumeFrom < events[i].ID {
				c.crossGap(gaps[0])
				gaps = gaps[1:]
			}
			if !h.replayEvent(c, sub, served, &events[i]) {
				return
			}
			pos = events[i].ID
		}
		if len(events) == replayPage {
			continue
		}
		if h.finishReplay(c, sub, pos) {
			return
		}
	}
}

// replayEvent queues e when the session wants it, waiting while SendBuffer
// messages are outstanding, and reports false when the session is closing.
// The check and the queueing share one critical section, so an unsubscribe
// or refresh that runs meanwhile holds back the events it should.
func (h *Hub) replayEvent(c *client, sub *subscription, served string, e *store.Event) bool {
	row := newEventRow(e)
	c.mu.Lock()
	if c.closing || c.stopped {
		c.mu.Unlock()
		return false
	}
	if !c.wantsReplayedLocked(e, row, sub, served) {
		c.servedUpTo = max(c.servedUpTo, e.ID)
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()

	// The message is built only for an event that is sent, outside the lock.
	msg, err := eventMessage(*e)
	if err != nil {
		h.log.Error("skipping event with an invalid payload", "event_id", e.ID, "err", err)
		return true
	}
	return c.waitFor(func() bool { return c.offerReplayedLocked(e, row, sub, served, msg) })
}

// offerReplayedLocked marks e as served when the session does not want it,
// or queues msg and marks it when there is room. It reports false, changing
// nothing, when SendBuffer messages are outstanding.
func (c *client) offerReplayedLocked(e *store.Event, row *eventRow, sub *subscription, served string, msg []byte) bool {
	if !c.wantsReplayedLocked(e, row, sub, served) {
		c.servedUpTo = max(c.servedUpTo, e.ID)
		return true
	}
	if c.outstanding >= c.sendBuffer {
		return false
	}
	c.servedUpTo = max(c.servedUpTo, e.ID)
	c.enqueueLocked(row.messageFor(c.grant, msg), e.ID)
	return true
}

// wantsReplayedLocked reports whether a replay of sub or a catch-up sends e.
// Up to served, the other subscriptions have sent their events already, so
// only events that sub alone matches are sent. After served, every
// subscription's events are sent, because the session is out of the live
// stream. The session's filter claim applies to both.
//
// NOTE: the check up to served uses the current token. After a refresh
// that widened the filter claim, an event the old token's filter held back
// counts as sent when another subscription matches it now, so the replay
// skips it.
func (c *client) wantsReplayedLocked(e *store.Event, row *eventRow, sub *subscription, served string) bool {
	if !c.grant.permits(e, row) {
		return false
	}
	if e.ID > served {
		for _, s := range c.subs {
			if s.matches(e, row) {
				return true
			}
		}
		return false
	}
	if sub == nil || !sub.matches(e, row) {
		return false
	}
	for _, s := range c.subs {
		if s != sub && s.matches(e, row) {
			return false
		}
	}
	return true
}

// finishReplay rejoins the live stream when the replay or catch-up has read
// up to the hub's cursor; otherwise it reads on.
func (h *Hub) finishReplay(c *client, sub *subscription, pos string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if pos < h.cursor {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	c.replaying = false
	c.stopReplay = nil
	c.replaySub = nil
	c.servedUpTo = max(c.servedUpTo, pos)
	// Every wanted event up to servedUpTo is queued now.
	c.resumeID = max(c.resumeID, c.servedUpTo)
	if c.catchUp != nil {
		c.catchUp.cancel()
		close(c.catchUp.done)
		c.catchUp = nil
	}
	if sub != nil && !sub.unsubscribed {
		c.enqueueLocked(subscribedMessage(sub, c.servedUpTo), "")
	}
	return true
}

// unsubscribed reports whether an unsubscribe of sub arrived.
func (c *client) unsubscribed(sub *subscription) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sub.unsubscribed
}
