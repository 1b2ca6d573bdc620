package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/civicbase/civicbase/store"
)

// Batching of attempt results: one store transaction records up to
// recordBatch results, and a result waits at most recordDelay for others.
const (
	recordBatch = 512
	recordDelay = 2 * time.Millisecond
)

// warnEvery limits retry warnings to one per endpoint per period, so a
// failing endpoint under load does not flood the log.
const warnEvery = 30 * time.Second

// record stores attempt results in batches until d.results is closed.
func (d *Dispatcher) record(ctx context.Context) {
	warned := map[string]time.Time{}
	batch := make([]store.Result, 0, recordBatch)
	for {
		r, ok := <-d.results
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		timeout := time.After(recordDelay)
	fill:
		for len(batch) < recordBatch {
			select {
			case r, ok := <-d.results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			case <-timeout:
				break fill
			}
		}
		d.recordBatch(ctx, batch, warned)
	}
}

func (d *Dispatcher) recordBatch(ctx context.Context, batch []store.Result, warned map[string]time.Time) {
	for try := 0; ; try++ {
		err := d.store.Record(ctx, batch)
		if err == nil {
			break
		}
		// The attempts happened, but until they are recorded the leases
		// keep the deliveries from being sent again. After the lease they
		// are sent again, which at worst duplicates them.
		d.log.ErrorContext(ctx, "recording delivery results failed; retrying", "count", len(batch), "attempt", try+1, "err", err)
		if try == 4 {
			return
		}
		sleep(ctx, time.Second)
	}
	for _, r := range batch {
		d.afterResult(ctx, r, warned)
	}
}

// afterResult keeps the endpoint's failure streak, disables endpoints that
// have failed for DisableAfter, and logs endpoints disabled after a 410.
func (d *Dispatcher) afterResult(ctx context.Context, r store.Result, warned map[string]time.Time) {
	log := d.log.With("webhook_id", r.WebhookID, "delivery_id", r.DeliveryID)
	hook, err := d.hooks.get(ctx, r.WebhookID)
	if errors.Is(err, store.ErrNotFound) {
		return // deleted meanwhile
	}
	if err != nil {
		// Typically a secret that cannot be opened with this instance's
		// CIVICBASE_ENCRYPTION_KEY: every attempt fails until an operator
		// fixes the key.
		if time.Since(warned[r.WebhookID]) > warnEvery {
			warned[r.WebhookID] = time.Now()
			log.ErrorContext(ctx, "webhook cannot be loaded; its deliveries fail until this is fixed", "err", err)
		}
		return
	}
	if r.Status == store.StatusDelivered {
		if !hook.failingSince.IsZero() {
			d.hooks.setFailingSince(r.WebhookID, time.Time{})
			if err := d.store.ClearFailing(ctx, r.WebhookID); err != nil {
				log.WarnContext(ctx, "clearing failure streak failed", "err", err)
			}
		}
		return
	}
	switch {
	case r.DisableReason != "":
		d.disabled(ctx, r.WebhookID, r.DisableReason) // Record disabled it
		return
	case r.Status == store.StatusDead:
		log.WarnContext(ctx, "delivery is dead; retry it through the API once the endpoint is fixed", "err", r.Error)
	case time.Since(warned[r.WebhookID]) > warnEvery:
		warned[r.WebhookID] = time.Now()
		log.WarnContext(ctx, "delivery failed; retrying", "err", r.Error, "next_attempt", r.NextAttempt.Format(time.RFC3339))
	}
	d.trackFailure(ctx, hook)
}

// trackFailure starts the endpoint's failure streak on its first failure
// and disables the endpoint once the streak passes DisableAfter. Later
// failures read the streak from the cache, so a failing endpoint under load
// costs no extra writes.
func (d *Dispatcher) trackFailure(ctx context.Context, hook *hook) {
	since := hook.failingSince
	if since.IsZero() {
		var err error
		if since, err = d.store.MarkFailing(ctx, hook.id); err != nil {
			return
		}
		d.hooks.setFailingSince(hook.id, since)
	}
	if time.Since(since) >= d.cfg.DisableAfter {
		d.disable(ctx, hook.id, fmt.Sprintf("every delivery failed since %s", since.UTC().Format(time.RFC3339)))
	}
}

func (d *Dispatcher) disable(ctx context.Context, id, reason string) {
	if err := d.store.DisableWebhook(ctx, id, reason); err != nil {
		d.log.ErrorContext(ctx, "disabling webhook failed", "webhook_id", id, "err", err)
		return
	}
	d.disabled(ctx, id, reason)
}

// disabled drops a disabled endpoint from the cache and logs what to do.
func (d *Dispatcher) disabled(ctx context.Context, id, reason string) {
	d.hooks.forget(id)
	d.log.ErrorContext(ctx, "webhook disabled; re-enable it with PATCH /webhooks/{id} {\"active\":true}", "webhook_id", id, "reason", reason)
}
