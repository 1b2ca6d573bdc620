package store

import (
	"context"
	"fmt"
)

// DeferBlocked moves due deliveries that wait behind a failed earlier
// delivery of the same row to the same endpoint to that delivery's next
// attempt, and returns how many it moved. It looks at the first perEndpoint
// due deliveries of each active endpoint.
//
// Such deliveries cannot be sent before the earlier one succeeds, but while
// they stay due, every claim scans past them. Behind an endpoint that keeps
// failing they pile up at the front of its queue, so without this claims
// grow slower for as long as the endpoint fails. Record moves them along
// with each later failure of the earlier delivery, and makes them due again
// as soon as it is delivered or dead, so moving them costs no delay. This
// catches the ones stored after the earlier delivery's last failure. Claim
// alone keeps rows in order; this only saves it work.
func (s *Store) DeferBlocked(ctx context.Context, perEndpoint int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `WITH front AS (
			SELECT c.* FROM (SELECT id FROM civicbase.webhooks WHERE active) w
			CROSS JOIN LATERAL (
				SELECT d.id, d.webhook_id, d.row_key, d.event_id FROM civicbase.deliveries d
				WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
				ORDER BY d.next_attempt_at, d.id
				LIMIT $1) c),
		blocked AS (
			SELECT f.id, b.until FROM front f
			CROSS JOIN LATERAL (
				SELECT max(p.next_attempt_at) AS until FROM civicbase.deliveries p
				WHERE p.row_key = f.row_key AND p.webhook_id IS NOT DISTINCT FROM f.webhook_id
				  AND p.status = 'pending' AND p.event_id < f.event_id AND p.attempts > 0) b
			WHERE b.until > now()),
		locked AS (
			SELECT d.id, b.until FROM civicbase.deliveries d JOIN blocked b ON b.id = d.id
			WHERE d.status = 'pending' AND d.next_attempt_at <= now()
			FOR UPDATE OF d SKIP LOCKED)
		UPDATE civicbase.deliveries d SET next_attempt_at = l.until
		FROM locked l WHERE d.id = l.id`, perEndpoint)
	if err != nil {
		return 0, fmt.Errorf("deferring deliveries blocked behind failed ones: %w", err)
	}
	return tag.RowsAffected(), nil
}
