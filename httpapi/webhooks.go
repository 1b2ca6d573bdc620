package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

const (
	// webhookBodyLimit is the maximum body of a /webhooks request in bytes.
	// A registration with 100 long event patterns fits with room to spare.
	webhookBodyLimit = 64 << 10
	// defaultWebhookPage and maxWebhookPage are the default and maximum page
	// sizes of GET /webhooks and GET /webhooks/{id}/deliveries.
	defaultWebhookPage = 50
	maxWebhookPage     = 200
	// webhookTimeout bounds the store queries and the URL check behind one
	// request, for the same reason as listTimeout.
	webhookTimeout = 10 * time.Second
	// defaultRotationGrace is Options.RotationGrace when zero.
	defaultRotationGrace = 24 * time.Hour
)

// webhookIDPattern matches the ids accepted in paths and cursors. New ids
// are "wh_" plus 20 lowercase base32 characters, and the pattern is looser
// so that a malformed id gets a plain 404.
var webhookIDPattern = regexp.MustCompile(`^wh_[0-9a-z]{1,64}$`)

// WebhookStore stores webhook endpoints and their deliveries.
// *store.Store implements it.
type WebhookStore interface {
	// CreateWebhook stores a new endpoint whose Secret is in stored form.
	CreateWebhook(ctx context.Context, w store.Webhook) (store.Webhook, error)
	// Webhook returns the endpoint with this id, or store.ErrNotFound.
	Webhook(ctx context.Context, id string) (store.Webhook, error)
	// Webhooks returns up to limit endpoints with ids greater than after,
	// in id order.
	Webhooks(ctx context.Context, after string, limit int) ([]store.Webhook, error)
	// UpdateWebhook applies the non-nil fields of u, or returns
	// store.ErrNotFound.
	UpdateWebhook(ctx context.Context, id string, u store.WebhookUpdate) (store.Webhook, error)
	// DeleteWebhook removes the endpoint and its deliveries, or returns
	// store.ErrNotFound.
	DeleteWebhook(ctx context.Context, id string) error
	// RotateSecret makes secret (in stored form) the endpoint's secret and
	// keeps the current one valid until graceUntil.
	RotateSecret(ctx context.Context, id, secret string, graceUntil time.Time) (store.Webhook, error)
	// Deliveries returns up to limit deliveries of the endpoint with ids
	// below before (0 for the newest), newest first, filtered by status
	// unless status is "".
	Deliveries(ctx context.Context, webhookID, status string, before int64, limit int) ([]store.DeliveryInfo, error)
	// RetryDelivery makes a delivery due now, or returns store.ErrNotFound.
	RetryDelivery(ctx context.Context, webhookID string, deliveryID int64) error
	// Replay queues the stored events that match the endpoint and follow
	// afterID, or when afterID is "", were committed at or after since. It
	// returns how many deliveries it queued.
	Replay(ctx context.Context, webhookID, afterID string, since time.Time) (int64, error)
	// AddDelivery queues a payload that is not a stored event and returns
	// the delivery id.
	AddDelivery(ctx context.Context, webhookID, eventID string, payload []byte) (int64, error)
	// Exists reports whether an event with this id is stored.
	Exists(ctx context.Context, id string) (bool, error)
	// GapsAfter returns the gaps whose ResumeFrom is greater than cursor,
	// in ResumeFrom order.
	GapsAfter(ctx context.Context, cursor string) ([]store.Gap, error)
	// GapSince returns the gap with the greatest ResumeFrom that a replay
	// of the events committed at or after since crosses, or nil.
	GapSince(ctx context.Context, since time.Time) (*store.Gap, error)
}

var _ WebhookStore = (*store.Store)(nil)

// webhookAPI is the configuration the /webhooks handlers share.
type webhookAPI struct {
	store         WebhookStore
	cipher        *delivery.Cipher
	guard         delivery.Guard
	catalog       func(ctx context.Context) (models []string, semantic []string, err error)
	rotationGrace time.Duration
}

func newWebhookAPI(opts Options) webhookAPI {
	return webhookAPI{
		store:         opts.Webhooks,
		cipher:        opts.Cipher,
		guard:         opts.Guard,
		catalog:       opts.Catalog,
		rotationGrace: cmp.Or(opts.RotationGrace, defaultRotationGrace),
	}
}

// registerWebhookRoutes adds the /webhooks routes, all behind the admin
// token and the webhook body limit.
func (a *api) registerWebhookRoutes(app *fiber.App) {
	route := func(handler fiber.Handler) []fiber.Handler {
		return []fiber.Handler{a.requireToken, limitWebhookBody, handler}
	}

	app.Post("/webhooks", route(a.createWebhook)...)
	app.Get("/webhooks", route(a.listWebhooks)...)
	app.Get("/webhooks/:id", route(a.getWebhook)...)
	app.Patch("/webhooks/:id", route(a.updateWebhook)...)
	app.Delete("/webhooks/:id", route(a.deleteWebhook)...)
	app.Post("/webhooks/:id/rotate-secret", route(a.rotateSecret)...)
	app.Post("/webhooks/:id/test", route(a.testWebhook)...)
	app.Get("/webhooks/:id/deliveries", route(a.listDeliveries)...)
	app.Post("/webhooks/:id/deliveries/:deliveryId/retry", route(a.retryDelivery)...)
	app.Post("/webhooks/:id/replay", route(a.replay)...)
}

// limitWebhookBody rejects bodies over webhookBodyLimit. limitRequests has
// already cut every body to bodyLimit, so this check reads no more.
func limitWebhookBody(c *fiber.Ctx) error {
	if len(c.Body()) > webhookBodyLimit {
		return &apiError{
			Status:  http.StatusRequestEntityTooLarge,
			Code:    "payload_too_large",
			Message: fmt.Sprintf("request body is %d bytes, more than the 64 KiB that /webhooks requests may have", len(c.Body())),
		}
	}
	return c.Next()
}

// webhookResponse is a webhook as the API returns it. Secret is set only in
// the response that creates a generated secret. The stored secret is never
// returned.
type webhookResponse struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Events         []string   `json:"events"`
	Description    string     `json:"description"`
	Active         bool       `json:"active"`
	DisabledReason *string    `json:"disabledReason"`
	FailingSince   *time.Time `json:"failingSince"`
	CreatedAt      time.Time  `json:"createdAt"`
	UpdatedAt      time.Time  `json:"updatedAt"`
	// RotationExpiresAt is when the previous secret stops signing, present
	// only while a rotation's grace period lasts.
	RotationExpiresAt *time.Time `json:"rotationExpiresAt,omitempty"`
	Secret            string     `json:"secret,omitempty"`
}

func newWebhookResponse(w store.Webhook, now time.Time) webhookResponse {
	resp := webhookResponse{
		ID:             w.ID,
		URL:            w.URL,
		Events:         w.Events,
		Description:    w.Description,
		Active:         w.Active,
		DisabledReason: w.DisabledReason,
		FailingSince:   utcPointer(w.FailingSince),
		CreatedAt:      w.CreatedAt.UTC(),
		UpdatedAt:      w.UpdatedAt.UTC(),
	}
	if resp.Events == nil {
		resp.Events = []string{}
	}
	if w.PreviousSecret != nil && w.PreviousExpiresAt != nil && w.PreviousExpiresAt.After(now) {
		resp.RotationExpiresAt = utcPointer(w.PreviousExpiresAt)
	}
	return resp
}

func utcPointer(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	utc := t.UTC()
	return &utc
}

// writeJSON sends v as JSON with status. It leaves <, > and & unescaped,
// because URLs with query strings are common here, and forbids caching,
// because some responses carry a secret.
func writeJSON(c *fiber.Ctx, status int, v any) error {
	var buf bytes.Buffer
	encoder := json.NewEncoder(&buf)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(v); err != nil {
		return fmt.Errorf("encoding response: %w", err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(status).Send(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// newWebhookID returns "wh_" plus 20 lowercase base32 characters, 100
// random bits.
func newWebhookID() string {
	return "wh_" + strings.ToLower(rand.Text()[:20])
}

// webhookIDParam returns the id path parameter, or a 404 error when it
// cannot be a webhook id.
func webhookIDParam(c *fiber.Ctx) (string, error) {
	// fiber reuses the request buffer after the handler returns, so the
	// parameter is copied.
	id := strings.Clone(c.Params("id"))
	if !webhookIDPattern.MatchString(id) {
		return "", errWebhookNotFound(id)
	}
	return id, nil
}

func errWebhookNotFound(id string) *apiError {
	return &apiError{
		Status:  http.StatusNotFound,
		Code:    "not_found",
		Message: fmt.Sprintf("no webhook with id %s; GET /webhooks lists the registered ones", quote(id)),
	}
}

// loadWebhook returns the webhook named by the id path parameter.
func (a *api) loadWebhook(ctx context.Context, c *fiber.Ctx) (store.Webhook, error) {
	id, err := webhookIDParam(c)
	if err != nil {
		return store.Webhook{}, err
	}
	hook, err := a.hooks.store.Webhook(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return hook, errWebhookNotFound(id)
	}
	return hook, err
}

// createWebhookRequest is the body of POST /webhooks.
type createWebhookRequest struct {
	URL         *string  `json:"url"`
	Events      []string `json:"events"`
	Secret      *string  `json:"secret"`
	Description *string  `json:"description"`
}

var createWebhookFields = bodyFields{
	"url":         "a string",
	"events":      "an array of strings",
	"secret":      "a string",
	"description": "a string",
}

// createWebhook serves POST /webhooks. It responds 201 with the webhook
// and, when no secret was given, the generated secret, which is never shown
// again.
func (a *api) createWebhook(c *fiber.Ctx) error {
	var req createWebhookRequest
	if err := decodeBody(c.Body(), &req, createWebhookFields); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()

	if req.URL == nil {
		return errMissingField("url", "url is missing; send the endpoint's absolute https URL")
	}
	if err := a.checkURL(ctx, *req.URL); err != nil {
		return err
	}
	if req.Events == nil {
		return errMissingField("events", `events is missing; send a list of event patterns such as ["*"] or ["data.created"]`)
	}
	events, err := a.checkEvents(ctx, req.Events)
	if err != nil {
		return err
	}
	var description string
	if req.Description != nil {
		if err := checkDescription(*req.Description); err != nil {
			return err
		}
		description = *req.Description
	}
	secret, generated, err := requestSecret(req.Secret)
	if err != nil {
		return err
	}
	sealed, err := a.hooks.cipher.Seal(secret.Reveal())
	if err != nil {
		return fmt.Errorf("sealing the secret of a new webhook: %w", err)
	}

	created, err := a.hooks.store.CreateWebhook(ctx, store.Webhook{
		ID:          newWebhookID(),
		URL:         *req.URL,
		Events:      events,
		Description: description,
		Secret:      sealed,
	})
	if err != nil {
		return err
	}
	a.logger.InfoContext(ctx, "webhook created", "webhook_id", created.ID, "secret_generated", generated)

	resp := newWebhookResponse(created, time.Now())
	if generated {
		resp.Secret = secret.Reveal()
	}
	c.Location("/webhooks/" + created.ID)
	return writeJSON(c, http.StatusCreated, resp)
}

// listWebhooks serves GET /webhooks?after=<id>&limit=<n>: webhooks in id
// order, {"webhooks":[…],"next":…,"hasMore":…}. next is the last id on the
// page, or after when the page is empty.
func (a *api) listWebhooks(c *fiber.Ctx) error {
	if err := onlyQuery(c, "after", "limit"); err != nil {
		return err
	}
	after, err := singleQuery(c, "after")
	if err != nil {
		return err
	}
	if after != "" && !webhookIDPattern.MatchString(after) {
		return &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   "after",
			Message: fmt.Sprintf(`after %s is not a webhook id; use the "next" value of the previous page`, quote(after)),
		}
	}
	limit, err := pageSize(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()

	hooks, err := a.hooks.store.Webhooks(ctx, after, limit+1)
	if err != nil {
		return err
	}
	hasMore := len(hooks) > limit
	if hasMore {
		hooks = hooks[:limit]
	}
	next := after
	now := time.Now()
	list := make([]webhookResponse, 0, len(hooks))
	for _, hook := range hooks {
		list = append(list, newWebhookResponse(hook, now))
		next = hook.ID
	}
	return writeJSON(c, http.StatusOK, struct {
		Webhooks []webhookResponse `json:"webhooks"`
		Next     string            `json:"next"`
		HasMore  bool              `json:"hasMore"`
	}{list, next, hasMore})
}

// getWebhook serves GET /webhooks/{id}.
func (a *api) getWebhook(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()
	hook, err := a.loadWebhook(ctx, c)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, newWebhookResponse(hook, time.Now()))
}

// updateWebhookRequest is the body of PATCH /webhooks/{id}. Absent members
// keep their value.
type updateWebhookRequest struct {
	URL         *string  `json:"url"`
	Events      []string `json:"events"`
	Description *string  `json:"description"`
	Active      *bool    `json:"active"`
}

var updateWebhookFields = bodyFields{
	"url":         "a string",
	"events":      "an array of strings",
	"description": "a string",
	"active":      "a boolean",
}

// updateWebhook serves PATCH /webhooks/{id}. A new URL is checked as at
// registration, and "active": true re-enables an endpoint that was disabled
// after repeated failures.
func (a *api) updateWebhook(c *fiber.Ctx) error {
	id, err := webhookIDParam(c)
	if err != nil {
		return err
	}
	var req updateWebhookRequest
	if err := decodeBody(c.Body(), &req, updateWebhookFields); err != nil {
		return err
	}
	if req.URL == nil && req.Events == nil && req.Description == nil && req.Active == nil {
		return &apiError{
			Status:  http.StatusBadRequest,
			Code:    "empty_update",
			Message: "request body changes nothing; send at least one of url, events, description and active",
		}
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()

	update, err := a.checkUpdate(ctx, req)
	if err != nil {
		return err
	}
	hook, err := a.hooks.store.UpdateWebhook(ctx, id, update)
	if errors.Is(err, store.ErrNotFound) {
		return errWebhookNotFound(id)
	}
	if err != nil {
		return err
	}
	a.logger.InfoContext(ctx, "webhook updated", "webhook_id", id, "active", hook.Active)
	return writeJSON(c, http.StatusOK, newWebhookResponse(hook, time.Now()))
}

// checkUpdate validates the members a PATCH sets.
func (a *api) checkUpdate(ctx context.Context, req updateWebhookRequest) (store.WebhookUpdate, error) {
	update := store.WebhookUpdate{URL: req.URL, Description: req.Description, Active: req.Active}
	if req.URL != nil {
		if err := a.checkURL(ctx, *req.URL); err != nil {
			return update, err
		}
	}
	if req.Events != nil {
		events, err := a.checkEvents(ctx, req.Events)
		if err != nil {
			return update, err
		}
		update.Events = events
	}
	if req.Description != nil {
		if err := checkDescription(*req.Description); err != nil {
			return update, err
		}
	}
	return update, nil
}

// deleteWebhook serves DELETE /webhooks/{id}: 204, and the endpoint's
// deliveries are deleted with it.
func (a *api) deleteWebhook(c *fiber.Ctx) error {
	id, err := webhookIDParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), webhookTimeout)
	defer cancel()

	err = a.hooks.store.DeleteWebhook(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return errWebhookNotFound(id)
	}
	if err != nil {
		return err
	}
	a.logger.InfoContext(ctx, "webhook deleted", "webhook_id", id)
	return c.SendStatus(http.StatusNoContent)
}
