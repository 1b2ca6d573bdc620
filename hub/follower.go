package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/civicbase/civicbase/store"
)

const (
	// followPage is how many events one store read of the follower returns.
	followPage = 1000
	// Backoff between attempts to load the cursor or to re-establish LISTEN.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Run follows the event store from the newest stored event and fans each
// new event out to the subscribed sessions. A LISTEN connection, writes of
// this process's store and Config.PollInterval wake it. When ctx ends it
// closes every session with 4009 and returns nil. Call it once.
func (h *Hub) Run(ctx context.Context) error {
	defer h.Close()
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.listen(ctx, wake)
	}()
	defer wg.Wait()

	cursor, ok := h.loadCursor(ctx)
	if !ok {
		return nil
	}
	h.log.InfoContext(ctx, "hub following the event store", "cursor", cursor)
	for {
		written := h.store.Written()
		cursor = h.catchUp(ctx, cursor)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-written:
		case <-time.After(h.cfg.PollInterval):
		}
	}
}

// loadCursor sets the hub's cursor to the newest stored event id, retrying
// until it succeeds or ctx ends.
func (h *Hub) loadCursor(ctx context.Context) (string, bool) {
	backoff := minBackoff
	for {
		var cursor string
		err := h.pool.QueryRow(ctx, "SELECT coalesce(max(id), '') FROM civicbase.events").Scan(&cursor)
		if err == nil {
			h.mu.Lock()
			h.cursor = cursor
			h.mu.Unlock()
			close(h.ready)
			return cursor, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		h.log.WarnContext(ctx, "reading the newest event id failed; retrying", "backoff", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return "", false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// catchUp fans out every event stored after cursor and returns the new
// cursor. A read error is logged and retried on the next wake-up.
func (h *Hub) catchUp(ctx context.Context, cursor string) string {
	for {
		events, gaps, err := h.store.ListWithGaps(ctx, cursor, followPage)
		if err != nil {
			if ctx.Err() == nil {
				h.log.WarnContext(ctx, "reading new events failed; retrying", "cursor", cursor, "err", err)
			}
			return cursor
		}
		if len(events) == 0 {
			return cursor
		}
		h.fanOut(events, h.buildMessages(events), gaps)
		cursor = events[len(events)-1].ID
		if len(events) < followPage {
			return cursor
		}
	}
}

// buildMessages serializes each event once for all the sessions that get
// it. An event whose payload cannot be decoded gets nil and is skipped.
func (h *Hub) buildMessages(events []store.Event) [][]byte {
	msgs := make([][]byte, len(events))
	for i, e := range events {
		msg, err := eventMessage(e)
		if err != nil {
			h.log.Error("skipping event with an invalid payload", "event_id", e.ID, "err", err)
			continue
		}
		msgs[i] = msg
	}
	return msgs
}

// fanOut sends each event to the sessions whose subscriptions name its
// model and moves the cursor past it. A session whose buffer is full leaves
// the live stream and catches up from the store. Before the first event
// after each of gaps, every live session gets resync_required.
func (h *Hub) fanOut(events []store.Event, msgs [][]byte, gaps []store.Gap) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range events {
		e := &events[i]
		for len(gaps) > 0 && gaps[0].ResumeFrom < e.ID {
			h.announceGapLocked(gaps[0])
			gaps = gaps[1:]
		}
		if msgs[i] != nil {
			row := newEventRow(e)
			for c := range h.index[e.Model] {
				if run := c.deliverLive(e, row, msgs[i]); run != nil {
					h.startCatchUp(c, run)
				}
			}
		}
		h.cursor = e.ID
	}
}

// deliverLive queues a live event once, however many of the session's
// subscriptions match it. When SendBuffer messages are outstanding it queues
// nothing, takes the session out of the live stream and returns the
// catch-up to start.
func (c *client) deliverLive(e *store.Event, row *eventRow, msg []byte) *catchUp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.replaying || c.closing || c.stopped || e.ID <= c.servedUpTo {
		return nil
	}
	if !c.wantsLiveLocked(e, row) {
		c.servedUpTo = e.ID
		return nil
	}
	if c.outstanding >= c.sendBuffer {
		return c.beginCatchUpLocked()
	}
	c.servedUpTo = e.ID
	c.enqueueLocked(row.messageFor(c.grant, msg), e.ID)
	return nil
}

func (c *client) wantsLiveLocked(e *store.Event, row *eventRow) bool {
	if !c.grant.permits(e, row) {
		return false
	}
	for _, s := range c.subs {
		if s.matches(e, row) {
			return true
		}
	}
	return false
}

// listen keeps a connection listening on store.NotifyChannel and signals
// wake after each notification, re-establishing it with backoff.
func (h *Hub) listen(ctx context.Context, wake chan<- struct{}) {
	backoff := minBackoff
	for {
		listened, err := h.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		if listened {
			backoff = minBackoff
		}
		h.log.WarnContext(ctx, "listening for event notifications failed; retrying", "backoff", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenOnce listens on one connection until it fails. It reports whether
// LISTEN succeeded.
func (h *Hub) listenOnce(ctx context.Context, wake chan<- struct{}) (bool, error) {
	acquired, err := h.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquiring a connection to listen on: %w", err)
	}
	// Hijack takes the connection out of the pool and it is closed below, so
	// no other pool user gets a connection that is still listening.
	conn := acquired.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()

	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{store.NotifyChannel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listening on %s: %w", store.NotifyChannel, err)
	}
	signal(wake) // events stored while no connection listened
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, fmt.Errorf("waiting for a notification on %s: %w", store.NotifyChannel, err)
		}
		signal(wake)
	}
}

func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// sleep waits for d and reports false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
