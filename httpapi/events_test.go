package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/store"
)

func TestEventsLimit(t *testing.T) {
	t.Parallel()

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		for _, limit := range []string{"0", "1001", "-1", "abc", "1e3", "+5", " 5", "5 ", "1.5", "0x10", "99999999999999999999", "१"} {
			resp := bundle.get(t, "/events?limit="+url.QueryEscape(limit))

			detail := requireError(t, resp, http.StatusBadRequest, "invalid_parameter")
			require.Equal(t, "limit", detail.Field)
			require.Equal(t, "limit "+strconv.Quote(limit)+" is not an integer from 1 to 1000", detail.Message)
		}
		require.Zero(t, bundle.events.callCount())
	})

	t.Run("LongValueCutInMessage", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.get(t, "/events?limit="+strings.Repeat("9", 5000))

		detail := requireError(t, resp, http.StatusBadRequest, "invalid_parameter")
		require.Less(t, len(detail.Message), 200)
	})

	t.Run("Valid", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		for query, want := range map[string]int{"": 100, "?limit=": 100, "?limit=1": 1, "?limit=1000": 1000, "?limit=007": 7} {
			resp := bundle.get(t, "/events"+query)

			decodePage(t, resp)
			call := bundle.events.lastCall(t)
			require.Equal(t, want+1, call.limit, "query %q", query)
			require.True(t, call.hasDeadline, "query %q", query)
		}
	})

	t.Run("GivenTwice", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.get(t, "/events?limit=5&limit=6")

		detail := requireError(t, resp, http.StatusBadRequest, "invalid_parameter")
		require.Equal(t, "limit", detail.Field)
		require.Contains(t, detail.Message, "2 times")
	})
}

func TestEventsAfter(t *testing.T) {
	t.Parallel()

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		invalid := []string{
			"foo", "evt_", "evt", "EVT_00", "evt_ABC", "evt_0g", "evt_00 ", " evt_00",
			"evt_" + strings.Repeat("0", 65), "evt_00\n", "evt_00'; DROP TABLE events; --", "<script>",
			"evt_0", "evt_2", "evt_" + strings.Repeat("0", 25), "evt_" + strings.Repeat("0", 27), "evt_" + strings.Repeat("f", 64),
		}
		for _, after := range invalid {
			resp := bundle.get(t, "/events?after="+url.QueryEscape(after))

			detail := requireError(t, resp, http.StatusBadRequest, "invalid_parameter")
			require.Equal(t, "after", detail.Field, "after %q", after)
			require.Contains(t, detail.Message, "after "+strconv.Quote(after)+" is not an event id", "after %q", after)
		}
		require.Zero(t, bundle.events.callCount())
	})

	t.Run("Valid", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		bundle.events.newestID = "evt_" + strings.Repeat("f", 26)

		for _, after := range []string{eventID(0), "evt_00000000016b37480000000100", "evt_" + strings.Repeat("f", 26)} {
			resp := bundle.get(t, "/events?after="+after)

			page := decodePage(t, resp)
			require.Equal(t, after, bundle.events.lastCall(t).after)
			require.Equal(t, after, page.Next)
		}
	})

	t.Run("GivenTwice", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.get(t, "/events?after=evt_1&after=evt_2")

		detail := requireError(t, resp, http.StatusBadRequest, "invalid_parameter")
		require.Equal(t, "after", detail.Field)
	})

	t.Run("AheadOfStore", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		bundle.events.events = []store.Event{testEvent(eventID(2))}

		resp := bundle.get(t, "/events?after="+eventID(9))

		detail := requireError(t, resp, http.StatusConflict, "unknown_cursor")
		require.Equal(t, "after", detail.Field)
		require.Contains(t, detail.Message, eventID(9))
		require.Contains(t, detail.Message, "without after")
	})

	t.Run("UnknownIDServesGreaterIDs", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		bundle.events.events = []store.Event{testEvent(eventID(2)), testEvent(eventID(4))}

		page := decodePage(t, bundle.get(t, "/events?after="+eventID(3)))

		require.Len(t, page.Events, 1)
		require.JSONEq(t, string(testEvent(eventID(4)).Payload), string(page.Events[0]))
		require.Equal(t, eventID(4), page.Next)
		require.False(t, page.HasMore)
	})
}

func TestEventsPagination(t *testing.T) {
	t.Parallel()

	t.Run("WalksAllPages", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		for i := 1; i <= 5; i++ {
			bundle.events.events = append(bundle.events.events, testEvent(eventID(i)))
		}

		page := decodePage(t, bundle.get(t, "/events?limit=2"))
		require.Len(t, page.Events, 2)
		require.Equal(t, eventID(2), page.Next)
		require.True(t, page.HasMore)

		page = decodePage(t, bundle.get(t, "/events?limit=2&after="+page.Next))
		require.Len(t, page.Events, 2)
		require.Equal(t, eventID(4), page.Next)
		require.True(t, page.HasMore)

		page = decodePage(t, bundle.get(t, "/events?limit=2&after="+page.Next))
		require.Len(t, page.Events, 1)
		require.Equal(t, eventID(5), page.Next)
		require.False(t, page.HasMore)

		page = decodePage(t, bundle.get(t, "/events?limit=2&after="+page.Next))
		require.Empty(t, page.Events)
		require.Equal(t, eventID(5), page.Next)
		require.False(t, page.HasMore)
	})

	t.Run("ExactlyLimitLeft", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		bundle.events.events = []store.Event{testEvent(eventID(1)), testEvent(eventID(2))}

		page := decodePage(t, bundle.get(t, "/events?limit=2"))

		require.Len(t, page.Events, 2)
		require.False(t, page.HasMore)
	})

	t.Run("EmptyStore", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.get(t, "/events")

		require.Equal(t, `{"events":[],"next":"","hasMore":false}`, string(resp.body))
		require.Equal(t, "no-store", resp.header.Get("Cache-Control"))
	})

	t.Run("SourceReturnsTooMany", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		bundle.events.listFunc = func(context.Context, string, int) ([]store.Event, error) {
			return []store.Event{testEvent(eventID(1)), testEvent(eventID(2)), testEvent(eventID(3))}, nil
		}

		page := decodePage(t, bundle.get(t, "/events?limit=1"))

		require.Len(t, page.Events, 1)
		require.Equal(t, eventID(1), page.Next)
		require.True(t, page.HasMore)
	})
}

func TestEventsPayloadBytes(t *testing.T) {
	t.Parallel()

	t.Run("SplicedUnchanged", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		// Decoding and re-encoding with encoding/json would escape <, >, & and
		// U+2028 and round the 23-digit number to a float64. The response must
		// carry the stored bytes instead.
		first := []byte(`{"id":"` + eventID(1) + `","changes":{"bio":"<b>Tom & Jerry</b>","line":"a` + "\u2028" + `b","n":"123456789012345678901234567890","big":12345678901234567890123,"f":1e+21,"z":-0}}`)
		second := []byte(`{"id":"` + eventID(2) + `","changes":{"emoji":"😀","esc":"\"\\\n"}}`)
		bundle.events.events = []store.Event{
			{ID: eventID(1), Payload: first},
			{ID: eventID(2), Payload: second},
		}

		resp := bundle.get(t, "/events")

		want := `{"events":[` + string(first) + `,` + string(second) + `],"next":"` + eventID(2) + `","hasMore":false}`
		require.Equal(t, want, string(resp.body))
		page := decodePage(t, resp)
		require.Equal(t, string(first), string(page.Events[0]))
		require.Equal(t, string(second), string(page.Events[1]))
	})

	t.Run("InvalidPayloadFailsRequest", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		bundle.events.events = []store.Event{
			testEvent(eventID(1)),
			{ID: eventID(2), Payload: []byte(`{"truncated":`)},
		}

		resp := bundle.get(t, "/events")

		requireError(t, resp, http.StatusInternalServerError, "internal_error")
		require.Contains(t, bundle.logs.String(), eventID(2))
	})

	t.Run("EmptyPayloadFailsRequest", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		bundle.events.events = []store.Event{{ID: eventID(1)}}

		resp := bundle.get(t, "/events")

		requireError(t, resp, http.StatusInternalServerError, "internal_error")
	})
}

func TestEventsSourceError(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)
	bundle.events.listFunc = func(context.Context, string, int) ([]store.Event, error) {
		return nil, errors.New("connection refused to db.internal:5432")
	}

	resp := bundle.get(t, "/events?after="+eventID(7))

	detail := requireError(t, resp, http.StatusInternalServerError, "internal_error")
	require.NotContains(t, detail.Message, "db.internal")
	logs := bundle.logs.String()
	require.Contains(t, logs, "connection refused to db.internal:5432")
	require.Contains(t, logs, eventID(7))
}

func TestListsRejectUnknownQueryParameters(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, httpapi.Options{})

	cases := []struct{ path, unknown, takes string }{
		{"/events?after_id=evt_00000000000000000000000001", "after_id", "GET /events takes after, limit"},
		{"/webhooks?limit=5&cursor=x", "cursor", "GET /webhooks takes after, limit"},
		{"/webhooks/wh_nothere/deliveries?after=evt_00000000000000000000000001", "after",
			"GET /webhooks/:id/deliveries takes status, before, limit"},
	}
	for _, tc := range cases {
		resp := bundle.send(t, http.MethodGet, tc.path, "")

		detail := requireError(t, resp, http.StatusBadRequest, "unknown_parameter")
		require.Equal(t, tc.unknown, detail.Field, tc.path)
		require.Contains(t, detail.Message, "unknown query parameter "+strconv.Quote(tc.unknown), tc.path)
		require.Contains(t, detail.Message, tc.takes, tc.path)
	}
}
