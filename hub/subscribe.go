package hub

import (
	"fmt"
	"time"
)

// readyTimeout is how long a subscribe waits for Run to load the cursor.
const readyTimeout = 10 * time.Second

// subscribe handles {"type":"subscribe"}. Without since the subscription
// goes live at once; with since it replays from the store first, and from
// after the newest gap when since is behind one.
func (h *Hub) subscribe(c *client, g *grant, msg clientMessage) {
	if !c.checkSubscriptionSlot(msg.ID, h.cfg.MaxSubscriptions) {
		return
	}
	sub, subErr := h.parseSubscription(g, msg)
	if subErr != nil {
		c.sendError(subErr.code, subErr.message, msg.ID)
		return
	}
	if !h.waitReady(c) {
		c.sendError(codeUnavailable, "the hub has not started following the event store yet; retry later", msg.ID)
		return
	}
	if msg.Since == "" {
		h.goLive(c, sub)
		return
	}
	if since, ok := h.replayStart(c, msg); ok {
		h.replay(c, sub, since)
	}
}

// checkSubscriptionSlot rejects a duplicate id with an error, and a
// subscription past the session's limit with an error and close code 4010.
func (c *client) checkSubscriptionSlot(id string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.subs[id]; ok {
		c.enqueueLocked(errorMessage(codeDuplicateSubscription,
			fmt.Sprintf("subscription %q exists; unsubscribe it first or pick another id", id), id), "")
		return false
	}
	if len(c.subs) >= limit {
		c.enqueueLocked(errorMessage(codeTooManySubscriptions,
			fmt.Sprintf("a session may have at most %d subscriptions", limit), id), "")
		c.closeLocked(closeTooManySubs, "too many subscriptions")
		return false
	}
	return true
}

func (h *Hub) waitReady(c *client) bool {
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-h.ready:
		return true
	case <-c.done:
	case <-timer.C:
	}
	return false
}

// goLive adds a subscription without since. It starts after the hub's
// cursor, or after the session's replay position when a replay read past
// the cursor. During a catch-up it starts after the catch-up's position, so
// the subscribed reply sits between the events queued before and after it.
func (h *Hub) goLive(c *client, sub *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()

	sub.from = max(h.cursor, c.servedUpTo)
	if c.replaying {
		sub.from = c.servedUpTo
	}
	c.servedUpTo = sub.from
	if c.resumeID == "" {
		c.resumeID = sub.from
	}
	c.subs[sub.id] = sub
	h.indexLocked(c, sub)
	c.enqueueLocked(subscribedMessage(sub, sub.from), "")
}

// unsubscribe handles {"type":"unsubscribe"}. No event of the subscription
// follows the unsubscribed reply.
func (h *Hub) unsubscribe(c *client, msg clientMessage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()

	sub, ok := c.subs[msg.ID]
	if !ok {
		c.enqueueLocked(errorMessage(codeUnknownSubscription, fmt.Sprintf("no subscription with id %q", msg.ID), msg.ID), "")
		return
	}
	delete(c.subs, msg.ID)
	h.unindexLocked(c, sub)
	c.enqueueLocked(unsubscribedMessage(msg.ID), "")
}

// takeSubscriptions removes and returns every subscription of the session.
func (c *client) takeSubscriptions() []*subscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	subs := make([]*subscription, 0, len(c.subs))
	for _, sub := range c.subs {
		subs = append(subs, sub)
	}
	clear(c.subs)
	return subs
}
