package hub

import (
	"context"

	"github.com/civicbase/civicbase/store"
)

// replayPage is how many events one store read of a replay returns.
const replayPage = 500

// replay adds a subscription with since. The session leaves the live stream
// and reads the store from since, for all its subscriptions, until it
// reaches the hub's cursor. It rejoins the live stream in the critical
// section that checks the cursor, so no event falls between replay and live
// and none is sent twice. The subscribed reply marks the seam.
//
// NOTE: the replay runs on the session's read loop, so the session's other
// messages wait until it ends. A client that reads nothing for
// replayStallTimeout is closed with 4008.
func (h *Hub) replay(c *client, sub *subscription, since string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served, ok := h.beginReplay(c, sub, since, cancel)
	if !ok {
		return
	}

	// TODO: report a since older than the oldest stored event (pruned) with
	// a resync_required error; for now the replay starts at the oldest one.
	pos := since
	for {
		events, err := h.store.List(ctx, pos, replayPage)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Error("replaying events failed", "conn_id", c.id, "since", pos, "err", err)
				c.close(closeInternalError, "reading events failed; reconnect and resume")
			}
			return
		}
		for i := range events {
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

// beginReplay takes the session out of the live stream and adds sub. It
// returns the id up to which the session's other subscriptions were served.
func (h *Hub) beginReplay(c *client, sub *subscription, since string, cancel context.CancelFunc) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.closing {
		return "", false
	}

	// Fan-out has sent every event up to the cursor to this live session.
	served := max(h.cursor, c.servedUpTo)
	c.stopReplay = cancel
	c.replaying = true
	sub.from = since
	if c.resumeID == "" || since < c.resumeID {
		c.resumeID = since
	}
	c.subs[sub.id] = sub
	h.indexLocked(c, sub)
	return served, true
}

// replayEvent queues e when the session wants it, and reports false when the
// session is closing.
func (h *Hub) replayEvent(c *client, sub *subscription, served string, e *store.Event) bool {
	if !c.wantsReplayed(e, newEventRow(e), sub, served) {
		return true
	}
	msg, err := eventMessage(*e)
	if err != nil {
		h.log.Error("skipping event with an invalid payload", "event_id", e.ID, "err", err)
		return true
	}
	return c.sendPaced(msg, e.ID)
}

// wantsReplayed reports whether the replay of sub sends e. Up to served,
// the other subscriptions have sent their events already, so only events
// that sub alone matches are sent. After served, every subscription's
// events are sent, because the session is out of the live stream. The
// session's filter claim applies to both.
//
// NOTE: the check up to served uses the current token. After a refresh
// that widened the filter claim, an event the old token's filter held back
// counts as sent when another subscription matches it now, so the replay
// skips it.
func (c *client) wantsReplayed(e *store.Event, row *eventRow, sub *subscription, served string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	if !sub.matches(e, row) {
		return false
	}
	for _, s := range c.subs {
		if s != sub && s.matches(e, row) {
			return false
		}
	}
	return true
}

// finishReplay rejoins the live stream when the replay has read up to the
// hub's cursor; otherwise the replay reads on.
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
	c.servedUpTo = max(c.servedUpTo, pos)
	// Every wanted event up to servedUpTo is queued now.
	c.resumeID = max(c.resumeID, c.servedUpTo)
	c.enqueueLocked(subscribedMessage(sub, c.servedUpTo), "")
	return true
}
