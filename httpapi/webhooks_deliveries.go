package httpapi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/store"
)

const (
	// maxGraceSeconds is the maximum grace period of a rotation, 7 days.
	maxGraceSeconds = 7 * 24 * 60 * 60
	// replayTimeout bounds the one INSERT … SELECT of a replay. It stays
	// under writeTimeout, so the client receives the outcome.
	replayTimeout = 25 * time.Second
)

// deliveryStatuses are the values of the status filter of GET
// /webhooks/{id}/deliveries.
var deliveryStatuses = []string{store.StatusPending, store.StatusDelivered, store.StatusDead}

// rotateSecretRequest is the optional body of POST
// /webhooks/{id}/rotate-secret.
type rotateSecretRequest struct {
	Secret       *string `json:"secret"`
	GraceSeconds *int64  `json:"graceSeconds"`
}

var rotateSecretFields = bodyFields{"secret": "a string", "graceSeconds": "an integer"}

// rotateSecret serves POST /webhooks/{id}/rotate-secret. The new secret
// signs deliveries at once, and the current one signs them too until the
// grace period ends, so receivers can switch without rejecting a delivery.
// A rotation during another's grace period ends the older secret at once.
// The response carries the new secret only when it was generated.
func (a *api) rotateSecret(c *fiber.Ctx) error {
	id, err := webhookIDParam(c)
	if err != nil {
		return err
	}
	var req rotateSecretRequest
	if len(c.Body()) > 0 {
		if err := decodeBody(c.Body(), &req, rotateSecretFields); err != nil {
			return err
		}
	}
	grace := a.hooks.rotationGrace
	if req.GraceSeconds != nil {
		if *req.GraceSeconds < 0 || *req.GraceSeconds > maxGraceSeconds {
			return &apiError{
				Status:  http.StatusUnprocessableEntity,
				Code:    "invalid_grace",
				Field:   "graceSeconds",
				Message: fmt.Sprintf("graceSeconds %d is not from 0 to %d (7 days)", *req.GraceSeconds, maxGraceSeconds),
			}
		}
		grace = time.Duration(*req.GraceSeconds) * time.Second
	}
	secret, generated, err := requestSecret(req.Secret)
	if err != nil {
		return err
	}
	sealed, err := a.hooks.cipher.Seal(secret.Reveal())
	if err != nil {
		return fmt.Errorf("sealing the new secret of webhook %s: %w", id, err)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()

	hook, err := a.hooks.store.RotateSecret(ctx, id, sealed, time.Now().Add(grace))
	if errors.Is(err, store.ErrNotFound) {
		return errWebhookNotFound(id)
	}
	if err != nil {
		return err
	}
	a.logger.InfoContext(ctx, "webhook secret rotated", "webhook_id", id, "grace", grace.String(), "secret_generated", generated)

	resp := newWebhookResponse(hook, time.Now())
	if generated {
		resp.Secret = secret.Reveal()
	}
	return writeJSON(c, http.StatusOK, resp)
}

// testWebhook serves POST /webhooks/{id}/test. It queues a webhook.test
// event for this endpoint only and responds 202 with the delivery id, whose
// outcome GET /webhooks/{id}/deliveries shows.
func (a *api) testWebhook(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()
	hook, err := a.loadWebhook(ctx, c)
	if err != nil {
		return err
	}
	if !hook.Active {
		reason := "disabled"
		if hook.DisabledReason != nil {
			reason = *hook.DisabledReason
		}
		return &apiError{
			Status: http.StatusConflict,
			Code:   "webhook_disabled",
			Message: fmt.Sprintf(`webhook %s is disabled (%s), so a test event would wait; enable it with PATCH /webhooks/%s {"active":true} first`,
				hook.ID, reason, hook.ID),
		}
	}

	eventID := "evt_test_" + strings.ToLower(rand.Text())
	deliveryID, err := a.hooks.store.AddDelivery(ctx, hook.ID, eventID, testPayload(eventID, hook.ID, time.Now()))
	if err != nil {
		return err
	}
	a.logger.InfoContext(ctx, "test event queued", "webhook_id", hook.ID, "delivery_id", deliveryID)
	return writeJSON(c, http.StatusAccepted, struct {
		DeliveryID int64  `json:"deliveryId"`
		EventID    string `json:"eventId"`
	}{deliveryID, eventID})
}

// testPayload returns the body of a webhook.test event in the canonical
// form that webhooks sign: {"id","event","webhookId","timestamp"}.
func testPayload(eventID, webhookID string, at time.Time) []byte {
	payload := []byte(`{"id":`)
	payload = canon.AppendString(payload, eventID)
	payload = append(payload, `,"event":"webhook.test","webhookId":`...)
	payload = canon.AppendString(payload, webhookID)
	payload = append(payload, `,"timestamp":`...)
	payload = strconv.AppendInt(payload, at.Unix(), 10)
	return append(payload, '}')
}

// listDeliveries serves GET /webhooks/{id}/deliveries?status=&before=&limit=:
// the endpoint's deliveries with their attempts, newest first, as
// {"deliveries":[…],"next":…,"hasMore":…}. next is the before value for the
// following page, or null on the last page.
func (a *api) listDeliveries(c *fiber.Ctx) error {
	if err := onlyQuery(c, "status", "before", "limit"); err != nil {
		return err
	}
	status, before, err := parseDeliveryFilter(c)
	if err != nil {
		return err
	}
	limit, err := pageSize(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()
	hook, err := a.loadWebhook(ctx, c)
	if err != nil {
		return err
	}

	list, err := a.hooks.store.Deliveries(ctx, hook.ID, status, before, limit+1)
	if err != nil {
		return err
	}
	hasMore := len(list) > limit
	var next *int64
	if hasMore {
		list = list[:limit]
		next = &list[limit-1].ID
	}
	if list == nil {
		list = []store.DeliveryInfo{}
	}
	return writeJSON(c, http.StatusOK, struct {
		Deliveries []store.DeliveryInfo `json:"deliveries"`
		Next       *int64               `json:"next"`
		HasMore    bool                 `json:"hasMore"`
	}{list, next, hasMore})
}

// parseDeliveryFilter validates the status and before query parameters.
func parseDeliveryFilter(c *fiber.Ctx) (status string, before int64, err error) {
	status, err = singleQuery(c, "status")
	if err != nil {
		return "", 0, err
	}
	if status != "" && !slices.Contains(deliveryStatuses, status) {
		return "", 0, &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   "status",
			Message: fmt.Sprintf("status %s is not a delivery status; use pending, delivered or dead", quote(status)),
		}
	}
	raw, err := singleQuery(c, "before")
	if err != nil || raw == "" {
		return status, 0, err
	}
	before, ok := parsePositive(raw)
	if !ok {
		return "", 0, &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   "before",
			Message: fmt.Sprintf(`before %s is not a delivery id; use the "next" value of the previous page`, quote(raw)),
		}
	}
	return status, before, nil
}

// retryDelivery serves POST /webhooks/{id}/deliveries/{deliveryId}/retry:
// the delivery is due at once with a fresh retry schedule, whatever its
// status.
func (a *api) retryDelivery(c *fiber.Ctx) error {
	raw := strings.Clone(c.Params("deliveryId"))
	deliveryID, ok := parsePositive(raw)
	if !ok {
		return &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   "deliveryId",
			Message: fmt.Sprintf("delivery id %s is not a positive integer; take the id from GET /webhooks/{id}/deliveries", quote(raw)),
		}
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()
	hook, err := a.loadWebhook(ctx, c)
	if err != nil {
		return err
	}

	err = a.hooks.store.RetryDelivery(ctx, hook.ID, deliveryID)
	if errors.Is(err, store.ErrNotFound) {
		return &apiError{
			Status:  http.StatusNotFound,
			Code:    "not_found",
			Message: fmt.Sprintf("webhook %s has no delivery %d; GET /webhooks/%s/deliveries lists them", hook.ID, deliveryID, hook.ID),
		}
	}
	if err != nil {
		return err
	}
	a.logger.InfoContext(ctx, "delivery retry requested", "webhook_id", hook.ID, "delivery_id", deliveryID)
	return writeJSON(c, http.StatusAccepted, struct {
		DeliveryID int64  `json:"deliveryId"`
		Status     string `json:"status"`
	}{deliveryID, store.StatusPending})
}

// replayRequest is the body of POST /webhooks/{id}/replay, with exactly one
// member set.
type replayRequest struct {
	After *string `json:"after"`
	Since *string `json:"since"`
}

var replayFields = bodyFields{"after": "a string", "since": "a string"}

// replay serves POST /webhooks/{id}/replay. It queues again the stored
// events that match the endpoint's patterns, either those after an event id
// or those committed at or after a time, and responds 202 with the count.
// Events delivered before are sent again with their original ids.
func (a *api) replay(c *fiber.Ctx) error {
	if _, err := webhookIDParam(c); err != nil {
		return err
	}
	var req replayRequest
	if err := decodeBody(c.Body(), &req, replayFields); err != nil {
		return err
	}
	since, err := parseReplayStart(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), replayTimeout)
	defer cancel()
	hook, err := a.loadWebhook(ctx, c)
	if err != nil {
		return err
	}
	var after string
	if req.After != nil {
		after = *req.After
		if err := a.checkReplayCursor(ctx, after); err != nil {
			return err
		}
	} else if err := a.checkReplaySince(ctx, since); err != nil {
		return err
	}

	// NOTE: one replay queues every matching event in a single statement,
	// with no cap. A replay over a large retention window can take longer
	// than replayTimeout, and it then queues nothing and fails with a 500.
	queued, err := a.hooks.store.Replay(ctx, hook.ID, after, since)
	if err != nil {
		return err
	}
	start := slog.String("after", after)
	if after == "" {
		start = slog.Time("since", since)
	}
	a.logger.InfoContext(ctx, "replay queued", "webhook_id", hook.ID, "count", queued, start)
	return writeJSON(c, http.StatusAccepted, struct {
		Queued int64 `json:"queued"`
	}{queued})
}

// parseReplayStart checks that exactly one of after and since is set, and
// parses since.
func parseReplayStart(req replayRequest) (time.Time, error) {
	switch {
	case req.After == nil && req.Since == nil:
		return time.Time{}, errMissingField("after",
			`send "after" (an event id, to replay the events after it) or "since" (an RFC 3339 time, to replay the events committed from then on)`)
	case req.After != nil && req.Since != nil:
		return time.Time{}, &apiError{
			Status:  http.StatusUnprocessableEntity,
			Code:    "conflicting_fields",
			Field:   "since",
			Message: `send either "after" or "since", not both`,
		}
	case req.After != nil:
		return time.Time{}, nil
	}
	since, err := time.Parse(time.RFC3339Nano, *req.Since)
	if err != nil {
		return time.Time{}, &apiError{
			Status:  http.StatusUnprocessableEntity,
			Code:    "invalid_time",
			Field:   "since",
			Message: fmt.Sprintf("since %s is not an RFC 3339 time; use a form such as 2024-05-01T12:00:00Z", quote(*req.Since)),
		}
	}
	return since, nil
}

// checkReplayCursor checks that after is a stored event id, or the
// ResumeFrom of a gap, with no gap after it. A replay after an id that was
// never stored, or was pruned, would start at the next stored id and hide
// that the events in between may be gone. A gap after the id is a 410
// resync_required.
func (a *api) checkReplayCursor(ctx context.Context, after string) error {
	if !eventIDPattern.MatchString(after) {
		return &apiError{
			Status:  http.StatusUnprocessableEntity,
			Code:    "invalid_event_id",
			Field:   "after",
			Message: fmt.Sprintf(`after %s is not an event id; use "evt_" plus 26 lowercase hex digits, such as the "id" of a received event`, quote(after)),
		}
	}
	gaps, err := a.hooks.store.GapsAfter(ctx, after)
	if err != nil {
		return err
	}
	if len(gaps) > 0 {
		gap := gaps[len(gaps)-1]
		return errResyncRequired("after", gap, gap.Message("events after "+after)+
			"; replay with after="+gap.ResumeFrom+", and bring the receiver up to date by other means")
	}
	exists, err := a.hooks.store.Exists(ctx, after)
	if err != nil {
		return err
	}
	if !exists {
		exists, err = a.isGapBoundary(ctx, after)
		if err != nil {
			return err
		}
	}
	if !exists {
		return &apiError{
			Status: http.StatusUnprocessableEntity,
			Code:   "event_not_found",
			Field:  "after",
			Message: fmt.Sprintf(`event %s is not stored; it may be older than the retention period, so replay with "since" instead`,
				after),
		}
	}
	return nil
}

// isGapBoundary reports whether id is the ResumeFrom of a gap, the id that
// a 410 response names to continue after.
func (a *api) isGapBoundary(ctx context.Context, id string) (bool, error) {
	gaps, err := a.hooks.store.GapsAfter(ctx, "")
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(gaps, func(g store.Gap) bool { return g.ResumeFrom == id }), nil
}

// checkReplaySince rejects a replay from a time before a gap with a 410
// resync_required, because it would queue the events on both sides of the
// gap as if none were missing.
func (a *api) checkReplaySince(ctx context.Context, since time.Time) error {
	gap, err := a.hooks.store.GapSince(ctx, since)
	if err != nil || gap == nil {
		return err
	}
	return errResyncRequired("since", *gap, gap.Message("events committed from "+since.UTC().Format(time.RFC3339)+" on")+
		"; replay with after="+gap.ResumeFrom+", and bring the receiver up to date by other means")
}
