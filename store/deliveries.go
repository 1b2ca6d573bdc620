package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusDead      = "dead"
)

// queueMatching selects, for events e joined with webhooks w, the delivery
// rows of the events that w's patterns match. Model patterns
// ("User.updated", "User.*") match only the generic data.* events; "*" and
// exact names match any event. The row key (table and primary key) orders
// deliveries of the same row. fanOut and Replay add their own conditions.
const queueMatching = `INSERT INTO civicbase.deliveries (webhook_id, event_id, row_key)
		SELECT w.id, e.id, e.table_name || ':' || coalesce(e.instance_id, '')
		FROM civicbase.events e
		JOIN civicbase.webhooks w ON w.events && ARRAY['*', e.event,
			CASE WHEN e.event LIKE 'data.%' THEN e.model || '.*' END,
			CASE WHEN e.event LIKE 'data.%' THEN e.model || '.' || substr(e.event, 6) END]
		`

// fanOut creates one delivery per stored event in [first, last] per active
// endpoint whose patterns match it.
func fanOut(ctx context.Context, tx pgx.Tx, first, last string) error {
	_, err := tx.Exec(ctx, queueMatching+`WHERE w.active AND e.id BETWEEN $1 AND $2
		ORDER BY e.id
		ON CONFLICT (webhook_id, event_id) DO NOTHING`, first, last)
	if err != nil {
		return fmt.Errorf("creating deliveries for events %s to %s: %w", first, last, err)
	}
	return nil
}

// Claimed is a delivery that a worker holds until its lease ends.
type Claimed struct {
	ID        int64
	WebhookID string
	EventID   string
	// Attempts counts earlier attempts, not this one.
	Attempts int
	Payload  []byte
	// CommitTime is the source commit time of the event, zero when the
	// event was pruned.
	CommitTime time.Time
	// LeaseUntil identifies this claim: a result is applied only while the
	// delivery still carries it, so a retry or replay requested during the
	// attempt is not overwritten by the attempt's outcome.
	LeaseUntil time.Time
}

// ClaimLimits caps how many deliveries one claim takes per endpoint, so
// that one endpoint's backlog cannot fill a claim.
type ClaimLimits struct {
	// PerEndpoint applies to endpoints not in Room.
	PerEndpoint int
	// Room overrides PerEndpoint per endpoint id. 0 skips the endpoint.
	Room map[string]int
}

// Claim leases up to limit due deliveries of active endpoints for lease,
// taking at most limits' room from each endpoint, and the oldest due first
// within an endpoint. Endpoints are visited in random order, so when the
// limit cuts a claim short, no endpoint is always the one left out.
// A delivery is due when no earlier pending delivery of the same row to the
// same endpoint exists, so rows reach an endpoint in commit order while
// other rows flow. Concurrent claimers skip each other's rows.
func (s *Store) Claim(ctx context.Context, limit int, lease time.Duration, limits ClaimLimits) ([]Claimed, error) {
	ids, rooms := make([]string, 0, len(limits.Room)), make([]int32, 0, len(limits.Room))
	for id, room := range limits.Room {
		ids, rooms = append(ids, id), append(rooms, int32(room))
	}
	// Inside the lateral subquery the endpoint is a constant. Compared with
	// =, the planner would apply that constant to p too, and with stale
	// statistics (a burst of new deliveries, a new endpoint) it then scanned
	// every pending delivery of the endpoint for each candidate: a claim of
	// 500 took 18 s in the webhook benchmark. IS NOT DISTINCT FROM keeps the
	// endpoint a per-candidate check, and the row index leads with row_key.
	rows, err := s.pool.Query(ctx, `WITH due AS (
			SELECT x.id FROM (SELECT id FROM civicbase.webhooks WHERE active ORDER BY random()) w
			LEFT JOIN unnest($3::text[], $4::int4[]) AS r(webhook_id, room) ON r.webhook_id = w.id
			CROSS JOIN LATERAL (
				SELECT d.id FROM civicbase.deliveries d
				WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
				  AND NOT EXISTS (SELECT 1 FROM civicbase.deliveries p
					WHERE p.row_key = d.row_key AND p.webhook_id IS NOT DISTINCT FROM d.webhook_id
					  AND p.status = 'pending' AND p.event_id < d.event_id)
				ORDER BY d.next_attempt_at, d.id
				LIMIT coalesce(r.room, $5)
				FOR UPDATE OF d SKIP LOCKED) x
			LIMIT $1)
		UPDATE civicbase.deliveries d SET next_attempt_at = now() + $2::interval
		FROM due WHERE d.id = due.id
		RETURNING d.id, d.webhook_id, d.event_id, d.attempts, d.next_attempt_at,
			coalesce(d.payload, (SELECT e.payload FROM civicbase.events e WHERE e.id = d.event_id)),
			(SELECT e.commit_time FROM civicbase.events e WHERE e.id = d.event_id)`,
		limit, lease, ids, rooms, limits.PerEndpoint)
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	claimed, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Claimed, error) {
		var c Claimed
		var payload *string
		var commitTime *time.Time
		err := row.Scan(&c.ID, &c.WebhookID, &c.EventID, &c.Attempts, &c.LeaseUntil, &payload, &commitTime)
		if commitTime != nil {
			c.CommitTime = *commitTime
		}
		if payload != nil {
			c.Payload = []byte(*payload)
		}
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	return claimed, nil
}

// Result is the outcome of one delivery attempt.
type Result struct {
	DeliveryID int64
	WebhookID  string
	LeaseUntil time.Time // from the claim
	Attempts   int       // attempts before this one, from the claim
	// Uncounted keeps the attempt out of the delivery's attempt count,
	// which the retry schedule follows, though it is recorded. It is set
	// when the attempt disables the endpoint: the delivery waits for the
	// endpoint and should keep all its retries for when it is back.
	Uncounted   bool
	AttemptedAt time.Time
	Duration    time.Duration
	StatusCode  int // 0 when no response arrived
	Error       string
	Response    string // the start of the response body
	// Status is the delivery's new status; for pending, NextAttempt is when
	// it is due again.
	Status      string
	NextAttempt time.Time
	// DisableReason, when set, disables the endpoint in the same transaction
	// that records the result, so the delivery cannot be claimed again
	// before the endpoint is disabled.
	DisableReason string
}

// Record stores the results of a batch of attempts: each delivery's new
// status and an attempt row, in one transaction.
func (s *Store) Record(ctx context.Context, results []Result) error {
	n := len(results)
	ids, codes, attempts := make([]int64, n), make([]*int32, n), make([]int32, n)
	leases := make([]time.Time, n)
	statuses, errs, responses := make([]string, n), make([]*string, n), make([]*string, n)
	attempted, next := make([]time.Time, n), make([]time.Time, n)
	durations := make([]float64, n)
	var disable, reasons []string
	for i, r := range results {
		if r.DisableReason != "" {
			disable, reasons = append(disable, r.WebhookID), append(reasons, r.DisableReason)
		}
		ids[i], statuses[i], attempted[i], next[i] = r.DeliveryID, r.Status, r.AttemptedAt, r.NextAttempt
		leases[i], attempts[i] = r.LeaseUntil, int32(r.Attempts)
		if !r.Uncounted {
			attempts[i]++
		}
		durations[i] = float64(r.Duration.Microseconds()) / 1000
		if r.StatusCode != 0 {
			code := int32(r.StatusCode)
			codes[i] = &code
		}
		if r.Error != "" {
			errs[i] = &results[i].Error
		}
		responses[i] = &results[i].Response
	}
	_, err := s.pool.Exec(ctx, `WITH r AS (
			SELECT * FROM unnest($1::int8[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::float8[],
				$6::int4[], $7::text[], $8::text[], $9::timestamptz[], $10::int4[])
				AS r(id, status, attempted_at, next_attempt_at, duration_ms, status_code, error, response, lease_until, attempts)),
		updated AS (
			UPDATE civicbase.deliveries d SET status = r.status, attempts = r.attempts,
				next_attempt_at = r.next_attempt_at, last_error = r.error,
				delivered_at = CASE WHEN r.status = 'delivered' THEN r.attempted_at END
			FROM r WHERE d.id = r.id AND d.next_attempt_at = r.lease_until AND d.status = 'pending'
			RETURNING d.webhook_id, d.row_key, d.event_id, d.status, d.attempts, d.next_attempt_at),
		later AS (
			-- Later deliveries of the row wait for this one: after a failure
			-- they move with it to its next attempt, and once it is done they
			-- are due at once. Only a delivery that failed before can have
			-- moved them (see DeferBlocked), so a first-time success skips
			-- the lookup.
			UPDATE civicbase.deliveries s
			SET next_attempt_at = CASE WHEN u.status = 'pending' THEN u.next_attempt_at ELSE now() END
			FROM updated u
			WHERE (u.status = 'pending' OR u.attempts > 1)
			  AND s.row_key = u.row_key AND s.webhook_id IS NOT DISTINCT FROM u.webhook_id
			  AND s.status = 'pending' AND s.event_id > u.event_id AND s.attempts = 0
			  AND CASE WHEN u.status = 'pending' THEN s.next_attempt_at < u.next_attempt_at
				ELSE s.next_attempt_at > now() END),
		disabled AS (
			UPDATE civicbase.webhooks w SET active = false, disabled_reason = x.reason, updated_at = now()
			FROM unnest($11::text[], $12::text[]) AS x(id, reason) WHERE w.id = x.id)
		INSERT INTO civicbase.delivery_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response)
		SELECT r.id, r.attempted_at, r.status_code, r.duration_ms, r.error, r.response FROM r
		WHERE EXISTS (SELECT 1 FROM civicbase.deliveries d WHERE d.id = r.id)`,
		ids, statuses, attempted, next, durations, codes, errs, responses, leases, attempts, disable, reasons)
	if err != nil {
		return fmt.Errorf("recording %d delivery attempts: %w", n, err)
	}
	return nil
}

// MarkFailing starts an endpoint's failure streak unless one is running, and
// returns when it started.
func (s *Store) MarkFailing(ctx context.Context, webhookID string) (time.Time, error) {
	var since time.Time
	err := s.pool.QueryRow(ctx, `UPDATE civicbase.webhooks SET failing_since = coalesce(failing_since, now())
		WHERE id = $1 RETURNING failing_since`, webhookID).Scan(&since)
	if errors.Is(err, pgx.ErrNoRows) {
		return since, ErrNotFound
	}
	if err != nil {
		return since, fmt.Errorf("marking webhook %s failing: %w", webhookID, err)
	}
	return since, nil
}

// ClearFailing ends an endpoint's failure streak after a success.
func (s *Store) ClearFailing(ctx context.Context, webhookID string) error {
	_, err := s.pool.Exec(ctx, `UPDATE civicbase.webhooks SET failing_since = NULL
		WHERE id = $1 AND failing_since IS NOT NULL`, webhookID)
	if err != nil {
		return fmt.Errorf("clearing the failure streak of webhook %s: %w", webhookID, err)
	}
	return nil
}

// Renew extends the lease of a claimed delivery to lease from now if the
// claim still holds, that is the delivery is pending and was not claimed,
// released or recorded since. It returns the renewed claim, or false when
// the claim was lost.
func (s *Store) Renew(ctx context.Context, c Claimed, lease time.Duration) (Claimed, bool, error) {
	err := s.pool.QueryRow(ctx, `UPDATE civicbase.deliveries SET next_attempt_at = now() + $3::interval
		WHERE id = $1 AND next_attempt_at = $2 AND status = 'pending'
		RETURNING next_attempt_at`, c.ID, c.LeaseUntil, lease).Scan(&c.LeaseUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("renewing the lease of delivery %d: %w", c.ID, err)
	}
	return c, true, nil
}

// Release ends the leases of claimed deliveries that were not attempted,
// making them due now.
func (s *Store) Release(ctx context.Context, claimed []Claimed) error {
	ids, leases := make([]int64, len(claimed)), make([]time.Time, len(claimed))
	for i, c := range claimed {
		ids[i], leases[i] = c.ID, c.LeaseUntil
	}
	_, err := s.pool.Exec(ctx, `UPDATE civicbase.deliveries d SET next_attempt_at = now()
		FROM unnest($1::int8[], $2::timestamptz[]) AS r(id, lease_until)
		WHERE d.id = r.id AND d.next_attempt_at = r.lease_until AND d.status = 'pending'`, ids, leases)
	if err != nil {
		return fmt.Errorf("releasing %d deliveries: %w", len(claimed), err)
	}
	return nil
}
