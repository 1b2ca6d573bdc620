package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/store"
)

// gapTimeout bounds the store read that checks a subscribe's since for gaps.
const gapTimeout = 10 * time.Second

// resyncMessage builds {"type":"resync_required","id"?,"reason","since"?,
// "resumeFrom","message"}. subID and since are set when the since of that
// subscribe was behind the gap. Both are empty when a session's stream
// crossed the gap, which concerns every subscription of the session.
func resyncMessage(g store.Gap, subID, since string) []byte {
	var o canon.Object
	o.Add("type", jsonString("resync_required"))
	if subID != "" {
		o.Add("id", jsonString(subID))
	}
	o.Add("reason", jsonString(g.Reason))
	message := g.Message("events before this message") + "; reload your state, because the events that follow start after " + g.ResumeFrom
	if since != "" {
		o.Add("since", jsonString(since))
		message = g.Message("events after "+since) + "; reload your state, because the replay starts after " + g.ResumeFrom
	}
	o.Add("resumeFrom", jsonString(g.ResumeFrom))
	o.Add("message", jsonString(message))
	return o.AppendTo(nil)
}

// replayStart returns the id after which the replay of a subscribe with
// since starts: since, or when since is behind a gap, the gap's ResumeFrom,
// after queuing a resync_required message. It reports false when the gaps
// cannot be read, after sending an error unless the session is closing.
func (h *Hub) replayStart(c *client, msg clientMessage) (string, bool) {
	ctx, cancel := context.WithTimeout(c.ctx, gapTimeout)
	defer cancel()
	gap, err := h.store.GapAfter(ctx, msg.Since)
	if err != nil {
		if c.ctx.Err() == nil {
			h.log.Error("reading gaps for a subscribe failed", "conn_id", c.id, "since", msg.Since, "err", err)
			c.sendError(codeUnavailable, "reading the event store failed; retry the subscribe", msg.ID)
		}
		return "", false
	}
	if gap == nil {
		newest, err := h.store.NewestKnownID(ctx)
		if err != nil {
			if c.ctx.Err() == nil {
				h.log.Error("reading the newest event id for a subscribe failed", "conn_id", c.id, "since", msg.Since, "err", err)
				c.sendError(codeUnavailable, "reading the event store failed; retry the subscribe", msg.ID)
			}
			return "", false
		}
		if msg.Since > newest {
			// Waiting for since would mute the session until this
			// database's ids pass it, which may never happen.
			h.log.Info("subscribe since an id newer than every stored event", "conn_id", c.id, "since", msg.Since, "newest", newest)
			c.sendError(codeInvalidSince, fmt.Sprintf("since %s is newer than every event this server stored (newest %q), "+
				"so it comes from another database, such as one restored or recreated; reload your state and subscribe without since",
				msg.Since, newest), msg.ID)
			return "", false
		}
		return msg.Since, true
	}
	h.log.Info("subscribe since an id behind a gap; sending resync_required", "conn_id", c.id,
		"since", msg.Since, "reason", gap.Reason, "resume_from", gap.ResumeFrom)
	c.send(resyncMessage(*gap, msg.ID, msg.Since))
	return gap.ResumeFrom, true
}

// announceGapLocked sends resync_required to every session in the live
// stream, which crossed gap. Sessions that replay or catch up get it from
// their own read of the store. h.mu must be held.
func (h *Hub) announceGapLocked(gap store.Gap) {
	sent := make(map[*client]bool)
	for _, sessions := range h.index {
		for c := range sessions {
			if _, seen := sent[c]; seen {
				continue
			}
			c.mu.Lock()
			sent[c] = !c.replaying && c.crossGapLocked(gap)
			c.mu.Unlock()
		}
	}
	count := 0
	for _, ok := range sent {
		if ok {
			count++
		}
	}
	h.log.Warn("the event stream crossed a gap; sent resync_required to live sessions",
		"reason", gap.Reason, "resume_from", gap.ResumeFrom, "sessions", count)
}

func (c *client) crossGap(gap store.Gap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crossGapLocked(gap)
}

// crossGapLocked queues resync_required when a subscription of the session
// started before gap, and moves those subscriptions' start to the gap, so
// that the session gets it once. It reports whether it queued the message.
// c.mu must be held.
func (c *client) crossGapLocked(gap store.Gap) bool {
	if c.closing || c.stopped {
		return false
	}
	crossed := false
	for _, s := range c.subs {
		if !s.unsubscribed && s.from < gap.ResumeFrom {
			s.from = gap.ResumeFrom
			crossed = true
		}
	}
	if !crossed {
		return false
	}
	c.resumeID = max(c.resumeID, gap.ResumeFrom)
	return c.enqueueLocked(resyncMessage(gap, "", ""), "")
}
