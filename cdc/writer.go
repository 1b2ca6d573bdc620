package cdc

import (
	"context"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/civicbase/civicbase/store"
)

// maxInflight is how many batches may be queued or being written at once.
// Two lets the session decode the next batch while Postgres inserts the
// previous one, and bounds memory at about three batches.
const maxInflight = 2

// writeTimeout bounds one store transaction, so a hung database ends the
// session (and a reconnect follows) instead of stalling it forever.
const writeTimeout = 60 * time.Second

type writeJob struct {
	events []store.Event
	cp     *store.Checkpoint
}

type writeResult struct {
	lsn pglogrepl.LSN // the checkpoint written, 0 when the job had none
	err error
}

// writer stores batches in order on its own goroutine. The session that
// starts it owns it and must call close.
type writer struct {
	store    *store.Store
	queue    chan writeJob
	results  chan writeResult
	done     chan struct{}
	inflight int // owned by the session
}

func startWriter(ctx context.Context, st *store.Store) *writer {
	w := &writer{
		store:   st,
		queue:   make(chan writeJob, maxInflight),
		results: make(chan writeResult, maxInflight+1),
		done:    make(chan struct{}),
	}
	// Writes run to completion even when ctx is canceled, so that shutdown
	// can drain them; each has its own timeout.
	go w.run(context.WithoutCancel(ctx))
	return w
}

func (w *writer) run(ctx context.Context) {
	defer close(w.done)
	for job := range w.queue {
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		err := w.store.Write(wctx, job.events, job.cp)
		cancel()
		res := writeResult{err: err}
		if job.cp != nil && err == nil {
			res.lsn = job.cp.LSN
		}
		w.results <- res
	}
}

// close stops the writer after the queued jobs and waits for it.
func (w *writer) close() {
	close(w.queue)
	<-w.done
}
