package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

func TestWebhookRotateSecret(t *testing.T) {
	t.Parallel()

	t.Run("DefaultGrace", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		oldStored, _ := bundle.storedSecrets(t, hook.ID)

		resp := bundle.send(t, http.MethodPost, "/webhooks/"+hook.ID+"/rotate-secret", "")

		var rotated webhookJSON
		decodeStrict(t, resp, http.StatusOK, &rotated)
		require.NotNil(t, rotated.Secret)
		require.True(t, strings.HasPrefix(*rotated.Secret, "whsec_"))
		require.NotEqual(t, *hook.Secret, *rotated.Secret)
		require.NotNil(t, rotated.RotationExpiresAt)
		require.WithinDuration(t, time.Now().Add(24*time.Hour), *rotated.RotationExpiresAt, time.Minute)

		stored, previous := bundle.storedSecrets(t, hook.ID)
		require.Equal(t, "plain:"+*rotated.Secret, stored)
		require.NotNil(t, previous)
		require.Equal(t, oldStored, *previous)

		resp = bundle.get(t, "/webhooks/"+hook.ID)
		var got webhookJSON
		decodeStrict(t, resp, http.StatusOK, &got)
		require.Nil(t, got.Secret)
		require.NotContains(t, string(resp.body), *rotated.Secret)
		require.True(t, got.RotationExpiresAt.Equal(*rotated.RotationExpiresAt))

		logs := bundle.logs.String()
		require.Contains(t, logs, `"msg":"webhook secret rotated"`)
		require.NotContains(t, logs, *rotated.Secret)
		require.NotContains(t, logs, *hook.Secret)
	})

	t.Run("GivenGraceAndSecret", func(t *testing.T) {
		t.Parallel()
		cipher, err := delivery.NewCipher(newKey())
		require.NoError(t, err)
		opts := devOptions()
		opts.Cipher = cipher
		bundle := setupWebhooks(t, opts)
		hook := bundle.createDev(t, "*")

		resp := bundle.send(t, http.MethodPost, "/webhooks/"+hook.ID+"/rotate-secret",
			`{"secret":"a-new-given-secret-value","graceSeconds":3600}`)

		var rotated webhookJSON
		decodeStrict(t, resp, http.StatusOK, &rotated)
		require.Nil(t, rotated.Secret)
		require.NotContains(t, string(resp.body), "a-new-given-secret-value")
		require.WithinDuration(t, time.Now().Add(time.Hour), *rotated.RotationExpiresAt, time.Minute)
		stored, previous := bundle.storedSecrets(t, hook.ID)
		opened, err := cipher.Open(stored)
		require.NoError(t, err)
		require.Equal(t, "a-new-given-secret-value", opened)
		opened, err = cipher.Open(*previous)
		require.NoError(t, err)
		require.Equal(t, *hook.Secret, opened)
	})

	t.Run("ZeroGraceEndsOldSecret", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")

		resp := bundle.send(t, http.MethodPost, "/webhooks/"+hook.ID+"/rotate-secret", `{"graceSeconds":0}`)

		var rotated webhookJSON
		decodeStrict(t, resp, http.StatusOK, &rotated)
		require.NotNil(t, rotated.Secret)
		require.Nil(t, rotated.RotationExpiresAt)
	})

	t.Run("RotationGraceOption", func(t *testing.T) {
		t.Parallel()
		opts := devOptions()
		opts.RotationGrace = 2 * time.Hour
		bundle := setupWebhooks(t, opts)
		hook := bundle.createDev(t, "*")

		resp := bundle.send(t, http.MethodPost, "/webhooks/"+hook.ID+"/rotate-secret", `{}`)

		var rotated webhookJSON
		decodeStrict(t, resp, http.StatusOK, &rotated)
		require.WithinDuration(t, time.Now().Add(2*time.Hour), *rotated.RotationExpiresAt, time.Minute)
	})

	t.Run("InvalidRequests", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		path := "/webhooks/" + hook.ID + "/rotate-secret"

		for _, grace := range []string{"-1", "604801"} {
			detail := requireError(t, bundle.send(t, http.MethodPost, path, `{"graceSeconds":`+grace+`}`),
				http.StatusUnprocessableEntity, "invalid_grace")
			require.Equal(t, "graceSeconds", detail.Field)
			require.Contains(t, detail.Message, "graceSeconds "+grace+" is not from 0 to 604800")
		}
		detail := requireError(t, bundle.send(t, http.MethodPost, path, `{"graceSeconds":1.5}`), http.StatusBadRequest, "invalid_type")
		require.Equal(t, "graceSeconds must be an integer, not number 1.5", detail.Message)
		detail = requireError(t, bundle.send(t, http.MethodPost, path, `{"secret":"short"}`), http.StatusUnprocessableEntity, "invalid_secret")
		require.Equal(t, "secret", detail.Field)
		require.NotContains(t, detail.Message, "short")
		requireError(t, bundle.send(t, http.MethodPost, path, `{"grace":60}`), http.StatusBadRequest, "unknown_field")

		stored, previous := bundle.storedSecrets(t, hook.ID)
		require.Equal(t, "plain:"+*hook.Secret, stored)
		require.Nil(t, previous)

		requireError(t, bundle.send(t, http.MethodPost, "/webhooks/wh_aaaaaaaaaaaaaaaaaaaa/rotate-secret", ""),
			http.StatusNotFound, "not_found")
	})
}

// deliveryJSON is a delivery as GET /webhooks/{id}/deliveries lists it.
type deliveryJSON struct {
	ID            int64         `json:"id"`
	EventID       string        `json:"eventId"`
	Status        string        `json:"status"`
	Attempts      []attemptJSON `json:"attempts"`
	NextAttemptAt *time.Time    `json:"nextAttemptAt"`
	LastError     *string       `json:"lastError"`
	CreatedAt     time.Time     `json:"createdAt"`
	DeliveredAt   *time.Time    `json:"deliveredAt"`
}

type attemptJSON struct {
	AttemptedAt time.Time `json:"attemptedAt"`
	StatusCode  *int      `json:"statusCode"`
	DurationMS  float64   `json:"durationMs"`
	Error       *string   `json:"error"`
	Response    *string   `json:"response"`
}

type deliveriesPage struct {
	Deliveries []deliveryJSON `json:"deliveries"`
	Next       *int64         `json:"next"`
	HasMore    bool           `json:"hasMore"`
}

func (b *webhookBundle) deliveries(t *testing.T, path string) deliveriesPage {
	t.Helper()
	var page deliveriesPage
	decodeStrict(t, b.get(t, path), http.StatusOK, &page)
	require.NotNil(t, page.Deliveries)
	return page
}

func TestWebhookTestEvent(t *testing.T) {
	t.Parallel()

	t.Run("QueuesDelivery", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "User.*")

		resp := bundle.send(t, http.MethodPost, "/webhooks/"+hook.ID+"/test", "")

		var queued struct {
			DeliveryID int64  `json:"deliveryId"`
			EventID    string `json:"eventId"`
		}
		decodeStrict(t, resp, http.StatusAccepted, &queued)
		require.Positive(t, queued.DeliveryID)
		require.Regexp(t, `^evt_test_[a-z2-7]{26}$`, queued.EventID)

		page := bundle.deliveries(t, "/webhooks/"+hook.ID+"/deliveries?status=pending")
		require.Len(t, page.Deliveries, 1)
		require.Equal(t, queued.DeliveryID, page.Deliveries[0].ID)
		require.Equal(t, queued.EventID, page.Deliveries[0].EventID)
		require.Equal(t, "pending", page.Deliveries[0].Status)
		require.Empty(t, page.Deliveries[0].Attempts)

		var payload string
		err := bundle.pool.QueryRow(t.Context(), `SELECT payload FROM civicbase.deliveries WHERE id = $1`, queued.DeliveryID).Scan(&payload)
		require.NoError(t, err)
		canonical, err := canon.Canonicalize(nil, []byte(payload))
		require.NoError(t, err)
		require.Equal(t, payload, string(canonical))
		var body struct {
			ID        string `json:"id"`
			Event     string `json:"event"`
			WebhookID string `json:"webhookId"`
			Timestamp int64  `json:"timestamp"`
		}
		require.NoError(t, json.Unmarshal([]byte(payload), &body))
		require.Equal(t, queued.EventID, body.ID)
		require.Equal(t, "webhook.test", body.Event)
		require.Equal(t, hook.ID, body.WebhookID)
		require.InDelta(t, time.Now().Unix(), body.Timestamp, 60)
		require.True(t, strings.HasPrefix(payload, `{"id":`), "payload %s", payload)
	})

	t.Run("DisabledWebhookConflict", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		require.NoError(t, bundle.store.DisableWebhook(t.Context(), hook.ID, "endpoint answered 410 Gone"))

		resp := bundle.send(t, http.MethodPost, "/webhooks/"+hook.ID+"/test", "")

		detail := requireError(t, resp, http.StatusConflict, "webhook_disabled")
		require.Contains(t, detail.Message, "endpoint answered 410 Gone")
		require.Contains(t, detail.Message, `{"active":true}`)
		require.Empty(t, bundle.deliveries(t, "/webhooks/"+hook.ID+"/deliveries").Deliveries)
	})

	t.Run("UnknownWebhook", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		resp := bundle.send(t, http.MethodPost, "/webhooks/wh_aaaaaaaaaaaaaaaaaaaa/test", "")

		requireError(t, resp, http.StatusNotFound, "not_found")
	})
}

func TestWebhookDeliveries(t *testing.T) {
	t.Parallel()

	t.Run("PagesNewestFirst", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		var ids []int64
		for i := range 3 {
			id, err := bundle.store.AddDelivery(t.Context(), hook.ID, fmt.Sprintf("evt_test_%d", i), []byte(`{}`))
			require.NoError(t, err)
			ids = append(ids, id)
		}
		path := "/webhooks/" + hook.ID + "/deliveries"

		page := bundle.deliveries(t, path+"?limit=2")
		require.Equal(t, []int64{ids[2], ids[1]}, deliveryIDs(page))
		require.True(t, page.HasMore)
		require.Equal(t, ids[1], *page.Next)

		page = bundle.deliveries(t, path+"?limit=2&before="+strconv.FormatInt(*page.Next, 10))
		require.Equal(t, []int64{ids[0]}, deliveryIDs(page))
		require.False(t, page.HasMore)
		require.Nil(t, page.Next)

		require.Empty(t, bundle.deliveries(t, path+"?status=delivered").Deliveries)
		require.Len(t, bundle.deliveries(t, path+"?status=pending").Deliveries, 3)
	})

	t.Run("ShowsAttempts", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		id, err := bundle.store.AddDelivery(t.Context(), hook.ID, "evt_test_attempts", []byte(`{}`))
		require.NoError(t, err)
		_, err = bundle.pool.Exec(t.Context(), `INSERT INTO civicbase.delivery_attempts
			(delivery_id, attempted_at, status_code, duration_ms, error, response)
			VALUES ($1, now(), 503, 12.5, 'endpoint answered 503', 'try later')`, id)
		require.NoError(t, err)
		_, err = bundle.pool.Exec(t.Context(), `UPDATE civicbase.deliveries SET status = 'dead' WHERE id = $1`, id)
		require.NoError(t, err)

		page := bundle.deliveries(t, "/webhooks/"+hook.ID+"/deliveries?status=dead")

		require.Len(t, page.Deliveries, 1)
		require.Equal(t, "dead", page.Deliveries[0].Status)
		require.Len(t, page.Deliveries[0].Attempts, 1)
		attempt := page.Deliveries[0].Attempts[0]
		require.Equal(t, 503, *attempt.StatusCode)
		require.InDelta(t, 12.5, attempt.DurationMS, 0.001)
		require.Equal(t, "endpoint answered 503", *attempt.Error)
		require.Equal(t, "try later", *attempt.Response)
		require.WithinDuration(t, time.Now(), attempt.AttemptedAt, time.Minute)
	})

	t.Run("InvalidParameters", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		path := "/webhooks/" + hook.ID + "/deliveries?"

		detail := requireError(t, bundle.get(t, path+"status=failed"), http.StatusBadRequest, "invalid_parameter")
		require.Equal(t, "status", detail.Field)
		require.Equal(t, `status "failed" is not a delivery status; use pending, delivered or dead`, detail.Message)
		for query, field := range map[string]string{
			"before=abc": "before", "before=0": "before", "before=-5": "before",
			"limit=0": "limit", "limit=201": "limit", "status=dead&status=pending": "status",
		} {
			detail := requireError(t, bundle.get(t, path+query), http.StatusBadRequest, "invalid_parameter")
			require.Equal(t, field, detail.Field, "query %s", query)
		}
	})

	t.Run("UnknownWebhook", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		requireError(t, bundle.get(t, "/webhooks/wh_aaaaaaaaaaaaaaaaaaaa/deliveries"), http.StatusNotFound, "not_found")
	})
}

func deliveryIDs(page deliveriesPage) []int64 {
	ids := make([]int64, len(page.Deliveries))
	for i, d := range page.Deliveries {
		ids[i] = d.ID
	}
	return ids
}

func TestWebhookRetryDelivery(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, devOptions())
	hook := bundle.createDev(t, "*")
	other := bundle.createDev(t, "*")
	id, err := bundle.store.AddDelivery(t.Context(), hook.ID, "evt_test_retry", []byte(`{}`))
	require.NoError(t, err)
	_, err = bundle.pool.Exec(t.Context(), `UPDATE civicbase.deliveries SET status = 'dead', attempts = 8 WHERE id = $1`, id)
	require.NoError(t, err)
	path := fmt.Sprintf("/webhooks/%s/deliveries/%d/retry", hook.ID, id)

	t.Run("DeadBecomesPending", func(t *testing.T) {
		resp := bundle.send(t, http.MethodPost, path, "")

		var retried struct {
			DeliveryID int64  `json:"deliveryId"`
			Status     string `json:"status"`
		}
		decodeStrict(t, resp, http.StatusAccepted, &retried)
		require.Equal(t, id, retried.DeliveryID)
		require.Equal(t, "pending", retried.Status)
		page := bundle.deliveries(t, "/webhooks/"+hook.ID+"/deliveries?status=pending")
		require.Equal(t, []int64{id}, deliveryIDs(page))
	})

	t.Run("UnknownDelivery", func(t *testing.T) {
		resp := bundle.send(t, http.MethodPost, fmt.Sprintf("/webhooks/%s/deliveries/%d/retry", hook.ID, id+1000), "")

		detail := requireError(t, resp, http.StatusNotFound, "not_found")
		require.Contains(t, detail.Message, strconv.FormatInt(id+1000, 10))
	})

	t.Run("OtherWebhooksDelivery", func(t *testing.T) {
		resp := bundle.send(t, http.MethodPost, fmt.Sprintf("/webhooks/%s/deliveries/%d/retry", other.ID, id), "")

		requireError(t, resp, http.StatusNotFound, "not_found")
	})

	t.Run("UnknownWebhook", func(t *testing.T) {
		resp := bundle.send(t, http.MethodPost, fmt.Sprintf("/webhooks/wh_aaaaaaaaaaaaaaaaaaaa/deliveries/%d/retry", id), "")

		detail := requireError(t, resp, http.StatusNotFound, "not_found")
		require.Contains(t, detail.Message, "wh_aaaaaaaaaaaaaaaaaaaa")
	})

	t.Run("MalformedDeliveryID", func(t *testing.T) {
		for _, raw := range []string{"abc", "0", "-1", "1.5", "99999999999999999999"} {
			resp := bundle.send(t, http.MethodPost, "/webhooks/"+hook.ID+"/deliveries/"+raw+"/retry", "")

			detail := requireError(t, resp, http.StatusBadRequest, "invalid_parameter")
			require.Equal(t, "deliveryId", detail.Field)
			require.Contains(t, detail.Message, strconv.Quote(raw))
		}
	})
}

// userEvent returns the i-th stored event of a User row, committed at at,
// with an id of the form the cdc package writes.
func userEvent(i int, name string, at time.Time) store.Event {
	id := fmt.Sprintf("evt_%026x", i)
	instance := strconv.Itoa(i)
	return store.Event{
		ID: id, Event: name, Model: "User", Table: "public.users", InstanceID: &instance,
		CommitLSN: pglogrepl.LSN(1000 + i), CommitTime: at, Txid: uint32(i),
		Payload: []byte(fmt.Sprintf(`{"id":%q,"event":%q,"model":"User"}`, id, name)),
	}
}

func TestWebhookReplay(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, devOptions())
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var events []store.Event
	for i := 1; i <= 5; i++ {
		events = append(events, userEvent(i, "data.created", base.Add(time.Duration(i)*time.Minute)))
	}
	// Neither matches User.*: model patterns cover only the data.* events.
	events = append(events, userEvent(6, "user.signed_up", base.Add(6*time.Minute)))
	project := userEvent(7, "data.created", base.Add(7*time.Minute))
	project.Model, project.Table = "Project", "public.projects"
	events = append(events, project)
	// Stored before the webhook exists, so only a replay queues them.
	require.NoError(t, bundle.store.Write(t.Context(), events, nil))
	hook := bundle.createDev(t, "User.*")
	path := "/webhooks/" + hook.ID + "/replay"

	t.Run("AfterEventID", func(t *testing.T) {
		resp := bundle.send(t, http.MethodPost, path, `{"after":"`+events[1].ID+`"}`)

		var replayed struct {
			Queued int64 `json:"queued"`
		}
		decodeStrict(t, resp, http.StatusAccepted, &replayed)
		require.Equal(t, int64(3), replayed.Queued)
		page := bundle.deliveries(t, "/webhooks/"+hook.ID+"/deliveries")
		var eventIDs []string
		for _, d := range page.Deliveries {
			eventIDs = append(eventIDs, d.EventID)
			require.Equal(t, "pending", d.Status)
		}
		require.ElementsMatch(t, []string{events[2].ID, events[3].ID, events[4].ID}, eventIDs)
		require.Contains(t, bundle.logs.String(), `"msg":"replay queued"`)
	})

	t.Run("SinceTime", func(t *testing.T) {
		since := events[3].CommitTime.Format(time.RFC3339)

		resp := bundle.send(t, http.MethodPost, path, `{"since":"`+since+`"}`)

		var replayed struct {
			Queued int64 `json:"queued"`
		}
		decodeStrict(t, resp, http.StatusAccepted, &replayed)
		require.Equal(t, int64(2), replayed.Queued)

		resp = bundle.send(t, http.MethodPost, path, `{"since":"`+base.Add(2*time.Hour).Format(time.RFC3339Nano)+`"}`)
		decodeStrict(t, resp, http.StatusAccepted, &replayed)
		require.Zero(t, replayed.Queued)
	})

	t.Run("InvalidRequests", func(t *testing.T) {
		detail := requireError(t, bundle.send(t, http.MethodPost, path, `{}`), http.StatusUnprocessableEntity, "missing_field")
		require.Contains(t, detail.Message, `"after"`)
		require.Contains(t, detail.Message, `"since"`)

		detail = requireError(t, bundle.send(t, http.MethodPost, path, `{"after":"`+events[0].ID+`","since":"2024-01-01T00:00:00Z"}`),
			http.StatusUnprocessableEntity, "conflicting_fields")
		require.Equal(t, "since", detail.Field)

		unknown := fmt.Sprintf("evt_%026x", 99)
		detail = requireError(t, bundle.send(t, http.MethodPost, path, `{"after":"`+unknown+`"}`),
			http.StatusUnprocessableEntity, "event_not_found")
		require.Equal(t, "after", detail.Field)
		require.Contains(t, detail.Message, unknown)

		detail = requireError(t, bundle.send(t, http.MethodPost, path, `{"after":"evt_XYZ"}`),
			http.StatusUnprocessableEntity, "invalid_event_id")
		require.Contains(t, detail.Message, `"evt_XYZ"`)

		detail = requireError(t, bundle.send(t, http.MethodPost, path, `{"since":"yesterday"}`),
			http.StatusUnprocessableEntity, "invalid_time")
		require.Equal(t, "since", detail.Field)
		require.Contains(t, detail.Message, `"yesterday"`)

		requireError(t, bundle.send(t, http.MethodPost, path, ""), http.StatusBadRequest, "invalid_json")
		requireError(t, bundle.send(t, http.MethodPost, path, `{"from":"x"}`), http.StatusBadRequest, "unknown_field")
	})

	t.Run("UnknownWebhook", func(t *testing.T) {
		resp := bundle.send(t, http.MethodPost, "/webhooks/wh_aaaaaaaaaaaaaaaaaaaa/replay", `{"after":"`+events[0].ID+`"}`)

		requireError(t, resp, http.StatusNotFound, "not_found")
	})
}
