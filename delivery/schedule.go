package delivery

import (
	"sync"
	"time"

	"github.com/civicbase/civicbase/store"
)

// rateWindow is the period over which an endpoint's completed attempts are
// counted to size its next claims.
const rateWindow = 5 * time.Second

// scheduler hands claimed deliveries to workers. Each endpoint has its own
// queue, and a worker takes the next delivery of an endpoint that has fewer
// than PerEndpoint attempts in flight, round robin across endpoints. So no
// worker waits for a busy endpoint, and a slow endpoint holds at most
// PerEndpoint workers while the others keep flowing.
//
// It also sizes claims per endpoint (limits), so one endpoint's backlog
// cannot fill the local queue. A claimed delivery waits here for about as
// long as its endpoint takes to complete one to two rate windows' worth of
// attempts, or two attempts when the endpoint is slow. That is well within
// the default lease of 60 s unless attempts run into their timeout.
type scheduler struct {
	perEndpoint int
	maxWaiting  int // claimed deliveries waiting in all queues together

	mu      sync.Mutex
	cond    sync.Cond // signalled when ready gets an endpoint, or on stop
	queues  map[string]*endpointQueue
	ready   []*endpointQueue // endpoints with waiting deliveries and a free slot
	waiting int
	stopped bool

	// taken is signalled when a worker takes a delivery, so the claimer can
	// claim again once there is room.
	taken chan struct{}
}

// endpointQueue is one endpoint's claimed deliveries.
type endpointQueue struct {
	id       string
	waiting  []store.Claimed
	inFlight int
	ready    bool // in scheduler.ready
	// done counts attempts completed since windowStart, and donePrev those
	// in the window before it.
	done, donePrev int
	windowStart    time.Time
}

func newScheduler(perEndpoint, maxWaiting int) *scheduler {
	s := &scheduler{perEndpoint: perEndpoint, maxWaiting: maxWaiting,
		queues: map[string]*endpointQueue{}, taken: make(chan struct{}, 1)}
	s.cond.L = &s.mu
	return s
}

// add queues claimed deliveries for the workers.
func (s *scheduler) add(claimed []store.Claimed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range claimed {
		q := s.queueLocked(c.WebhookID)
		q.waiting = append(q.waiting, c)
		s.waiting++
		if s.markReadyLocked(q) {
			s.cond.Signal()
		}
	}
}

func (s *scheduler) queueLocked(id string) *endpointQueue {
	q, ok := s.queues[id]
	if !ok {
		q = &endpointQueue{id: id, windowStart: time.Now()}
		s.queues[id] = q
	}
	return q
}

// markReadyLocked puts q in the ready list when it has a delivery to send
// and a free slot, and reports whether it did.
func (s *scheduler) markReadyLocked(q *endpointQueue) bool {
	if q.ready || len(q.waiting) == 0 || q.inFlight >= s.perEndpoint {
		return false
	}
	q.ready = true
	s.ready = append(s.ready, q)
	return true
}

// next waits for a delivery whose endpoint has a free slot and takes the
// slot. It reports false once stop was called.
func (s *scheduler) next() (store.Claimed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.ready) == 0 && !s.stopped {
		s.cond.Wait()
	}
	if s.stopped {
		return store.Claimed{}, false
	}
	q := s.ready[0]
	s.ready = s.ready[1:]
	q.ready = false
	c := q.waiting[0]
	q.waiting[0] = store.Claimed{} // drop the payload reference
	q.waiting = q.waiting[1:]
	q.inFlight++
	s.waiting--
	s.markReadyLocked(q) // to the back of the line: round robin
	if len(s.ready) > 0 {
		// More to send: wake another worker, which wakes the next in
		// turn, so sleeping workers join only while there is work.
		s.cond.Signal()
	}
	select {
	case s.taken <- struct{}{}:
	default:
	}
	return c, true
}

// finish frees the slot that next took for c. With attempted set, the
// attempt counts toward the endpoint's claim size. It wakes no worker,
// because the caller calls next right after.
func (s *scheduler) finish(c store.Claimed, attempted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[c.WebhookID]
	q.inFlight--
	if attempted {
		q.rotate(time.Now())
		q.done++
	}
	s.markReadyLocked(q)
}

// rotate starts a new counting window when the current one is over.
func (q *endpointQueue) rotate(now time.Time) {
	switch elapsed := now.Sub(q.windowStart); {
	case elapsed >= 2*rateWindow:
		q.done, q.donePrev, q.windowStart = 0, 0, now
	case elapsed >= rateWindow:
		q.donePrev, q.done, q.windowStart = q.done, 0, now
	}
}

// room returns how many more deliveries may be claimed in all.
func (s *scheduler) room() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxWaiting - s.waiting
}

// limits returns the per-endpoint room for the next claim. An endpoint may
// have as many deliveries waiting and in flight as it completed in the last
// one to two rate windows, and at least twice PerEndpoint. So a fast
// endpoint gets big claims and a slow one small ones. Endpoints with nothing
// queued and no recent attempt are forgotten, and get the default room on
// their next claim.
func (s *scheduler) limits() store.ClaimLimits {
	s.mu.Lock()
	defer s.mu.Unlock()
	floor := 2 * s.perEndpoint
	limits := store.ClaimLimits{PerEndpoint: floor, Room: make(map[string]int, len(s.queues))}
	now := time.Now()
	for id, q := range s.queues {
		q.rotate(now)
		outstanding := len(q.waiting) + q.inFlight
		if outstanding == 0 && q.done == 0 && q.donePrev == 0 {
			delete(s.queues, id)
			continue
		}
		limit := min(max(floor, q.done+q.donePrev), s.maxWaiting)
		limits.Room[id] = max(limit-outstanding, 0)
	}
	return limits
}

// stop makes next report false. Waiting deliveries stay for drain.
func (s *scheduler) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	s.cond.Broadcast()
}

// drain removes and returns every waiting delivery.
func (s *scheduler) drain() []store.Claimed {
	s.mu.Lock()
	defer s.mu.Unlock()
	var left []store.Claimed
	for _, q := range s.queues {
		left = append(left, q.waiting...)
		q.waiting = nil
	}
	s.ready, s.waiting = nil, 0
	return left
}
