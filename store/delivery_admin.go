package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Attempt is one recorded delivery attempt.
type Attempt struct {
	AttemptedAt time.Time `json:"attemptedAt"`
	StatusCode  *int      `json:"statusCode"`
	DurationMS  float64   `json:"durationMs"`
	Error       *string   `json:"error"`
	Response    *string   `json:"response"`
}

// DeliveryInfo is a delivery with its attempts, as the API lists it.
type DeliveryInfo struct {
	ID          int64      `json:"id"`
	EventID     string     `json:"eventId"`
	Status      string     `json:"status"`
	Attempts    []Attempt  `json:"attempts"`
	NextAttempt *time.Time `json:"nextAttemptAt"`
	LastError   *string    `json:"lastError"`
	CreatedAt   time.Time  `json:"createdAt"`
	DeliveredAt *time.Time `json:"deliveredAt"`
}

// Deliveries lists an endpoint's deliveries, newest event first, starting
// after the delivery before (0 for the newest), optionally only those with
// status. It walks the (webhook_id, event_id) index, so it needs no index of
// its own.
func (s *Store) Deliveries(ctx context.Context, webhookID, status string, before int64, limit int) ([]DeliveryInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.id, d.event_id, d.status,
			CASE WHEN d.status = 'pending' THEN d.next_attempt_at END, d.last_error, d.created_at, d.delivered_at,
			coalesce((SELECT json_agg(json_build_object('attemptedAt', a.attempted_at, 'statusCode', a.status_code,
				'durationMs', a.duration_ms, 'error', a.error, 'response', a.response) ORDER BY a.id)
				FROM civicbase.delivery_attempts a WHERE a.delivery_id = d.id), '[]')
		FROM civicbase.deliveries d
		WHERE d.webhook_id = $1 AND ($2 = '' OR d.status = $2)
		  AND ($3 = 0 OR d.event_id < (SELECT b.event_id FROM civicbase.deliveries b WHERE b.id = $3))
		ORDER BY d.event_id DESC LIMIT $4`, webhookID, status, before, limit)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries of webhook %s: %w", webhookID, err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeliveryInfo, error) {
		var d DeliveryInfo
		err := row.Scan(&d.ID, &d.EventID, &d.Status, &d.NextAttempt, &d.LastError, &d.CreatedAt, &d.DeliveredAt, &d.Attempts)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing deliveries of webhook %s: %w", webhookID, err)
	}
	return list, nil
}

// RetryDelivery makes a delivery due now with a fresh retry schedule,
// whatever its status. Later deliveries of the same row that waited for its
// next attempt (see DeferBlocked) are due now too: they still follow it,
// because a claim takes a row's deliveries in order.
func (s *Store) RetryDelivery(ctx context.Context, webhookID string, deliveryID int64) error {
	var found bool
	err := s.pool.QueryRow(ctx, `WITH retried AS (
			UPDATE civicbase.deliveries SET status = 'pending', attempts = 0, next_attempt_at = now()
			WHERE webhook_id = $1 AND id = $2
			RETURNING webhook_id, row_key, event_id),
		later AS (
			UPDATE civicbase.deliveries s SET next_attempt_at = now()
			FROM retried r
			WHERE s.row_key = r.row_key AND s.webhook_id = r.webhook_id AND s.status = 'pending'
			  AND s.event_id > r.event_id AND s.attempts = 0 AND s.next_attempt_at > now())
		SELECT EXISTS (SELECT 1 FROM retried)`, webhookID, deliveryID).Scan(&found)
	if err != nil {
		return fmt.Errorf("retrying delivery %d: %w", deliveryID, err)
	}
	if !found {
		return ErrNotFound
	}
	return nil
}

// Replay queues again, for one endpoint, every stored event that matches its
// patterns and has an id greater than afterID (or, when afterID is empty, a
// commit time at or after since). Events delivered before are sent again.
// It returns how many deliveries it queued.
func (s *Store) Replay(ctx context.Context, webhookID, afterID string, since time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, queueMatching+`WHERE w.id = $1 AND CASE WHEN $2 <> '' THEN e.id > $2 ELSE e.commit_time >= $3 END
		ORDER BY e.id
		ON CONFLICT (webhook_id, event_id) DO UPDATE
			SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL`, webhookID, afterID, since)
	if err != nil {
		return 0, fmt.Errorf("replaying events to webhook %s: %w", webhookID, err)
	}
	return tag.RowsAffected(), nil
}

// AddDelivery queues a delivery whose payload is not a stored event, such
// as webhook.test.
func (s *Store) AddDelivery(ctx context.Context, webhookID, eventID string, payload []byte) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO civicbase.deliveries (webhook_id, event_id, row_key, payload)
		VALUES ($1, $2, $2, $3) RETURNING id`, webhookID, eventID, string(payload)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("queuing %s for webhook %s: %w", eventID, webhookID, err)
	}
	s.signalWritten()
	return id, nil
}

// PruneDeliveries deletes finished (delivered or dead) deliveries created
// before cutoff, with their attempts, at most batch per statement. Pending
// deliveries are kept whatever their age. It returns how many it deleted.
func (s *Store) PruneDeliveries(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM civicbase.deliveries WHERE id IN (
			SELECT id FROM civicbase.deliveries WHERE status <> 'pending' AND created_at < $1 LIMIT $2)`, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("pruning deliveries before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
