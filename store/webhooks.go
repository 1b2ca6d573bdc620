package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotFound is returned when a webhook or delivery does not exist.
var ErrNotFound = errors.New("not found")

// Webhook is a registered endpoint. Secret and PreviousSecret are in their
// stored form, encrypted when an encryption key is configured.
type Webhook struct {
	ID                string
	URL               string
	Events            []string
	Description       string
	Secret            string
	PreviousSecret    *string
	PreviousExpiresAt *time.Time
	Active            bool
	DisabledReason    *string
	FailingSince      *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

const webhookColumns = `id, url, events, description, secret, previous_secret, previous_expires_at,
	active, disabled_reason, failing_since, created_at, updated_at`

func scanWebhook(row pgx.CollectableRow) (Webhook, error) {
	var w Webhook
	err := row.Scan(&w.ID, &w.URL, &w.Events, &w.Description, &w.Secret, &w.PreviousSecret, &w.PreviousExpiresAt,
		&w.Active, &w.DisabledReason, &w.FailingSince, &w.CreatedAt, &w.UpdatedAt)
	return w, err
}

func (s *Store) queryWebhook(ctx context.Context, sql string, args ...any) (Webhook, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return Webhook{}, err
	}
	w, err := pgx.CollectExactlyOneRow(rows, scanWebhook)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}

// CreateWebhook stores a new endpoint.
func (s *Store) CreateWebhook(ctx context.Context, w Webhook) (Webhook, error) {
	created, err := s.queryWebhook(ctx, `INSERT INTO civicbase.webhooks (id, url, events, description, secret)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+webhookColumns, w.ID, w.URL, w.Events, w.Description, w.Secret)
	if err != nil {
		return created, fmt.Errorf("creating webhook %s: %w", w.ID, err)
	}
	return created, nil
}

// Webhook returns the endpoint with this id.
func (s *Store) Webhook(ctx context.Context, id string) (Webhook, error) {
	w, err := s.queryWebhook(ctx, `SELECT `+webhookColumns+` FROM civicbase.webhooks WHERE id = $1`, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return w, fmt.Errorf("reading webhook %s: %w", id, err)
	}
	return w, err
}

// Webhooks returns up to limit endpoints with ids greater than after.
func (s *Store) Webhooks(ctx context.Context, after string, limit int) ([]Webhook, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+webhookColumns+` FROM civicbase.webhooks
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing webhooks: %w", err)
	}
	hooks, err := pgx.CollectRows(rows, scanWebhook)
	if err != nil {
		return nil, fmt.Errorf("listing webhooks: %w", err)
	}
	return hooks, nil
}

// WebhookUpdate holds the fields of a PATCH; nil fields stay as they are.
type WebhookUpdate struct {
	URL         *string
	Events      []string
	Description *string
	// Active re-enables (true) or disables (false) the endpoint. Enabling
	// clears the disabled reason and the failure streak.
	Active *bool
}

// UpdateWebhook applies u to the endpoint with this id.
func (s *Store) UpdateWebhook(ctx context.Context, id string, u WebhookUpdate) (Webhook, error) {
	w, err := s.queryWebhook(ctx, `UPDATE civicbase.webhooks SET
			url = coalesce($2, url),
			events = coalesce($3, events),
			description = coalesce($4, description),
			active = coalesce($5, active),
			disabled_reason = CASE WHEN $5 THEN NULL WHEN $5 = false THEN 'disabled through the API' ELSE disabled_reason END,
			failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
			updated_at = now()
		WHERE id = $1 RETURNING `+webhookColumns, id, u.URL, u.Events, u.Description, u.Active)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return w, fmt.Errorf("updating webhook %s: %w", id, err)
	}
	return w, err
}

// DeleteWebhook removes the endpoint and its deliveries.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM civicbase.webhooks WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("deleting webhook %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RotateSecret makes secret the endpoint's secret and keeps the current one
// valid until graceUntil.
func (s *Store) RotateSecret(ctx context.Context, id, secret string, graceUntil time.Time) (Webhook, error) {
	w, err := s.queryWebhook(ctx, `UPDATE civicbase.webhooks SET previous_secret = secret, previous_expires_at = $3,
			secret = $2, updated_at = now()
		WHERE id = $1 RETURNING `+webhookColumns, id, secret, graceUntil)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return w, fmt.Errorf("rotating the secret of webhook %s: %w", id, err)
	}
	return w, err
}

// DisableWebhook marks the endpoint inactive with a reason. Its pending
// deliveries wait until it is enabled again.
func (s *Store) DisableWebhook(ctx context.Context, id, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE civicbase.webhooks SET active = false, disabled_reason = $2, updated_at = now()
		WHERE id = $1`, id, reason)
	if err != nil {
		return fmt.Errorf("disabling webhook %s: %w", id, err)
	}
	return nil
}
