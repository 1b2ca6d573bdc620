package hub

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/store"
)

// clientMessage is any message a client sends. Type selects the members
// that apply.
type clientMessage struct {
	Type   string   `json:"type"`
	Token  string   `json:"token"`
	ID     string   `json:"id"`
	Models []string `json:"models"`
	Events []string `json:"events"`
	Since  string   `json:"since"`
	// Filter pins columns per model of a subscription: model → column →
	// value.
	Filter map[string]map[string]json.RawMessage `json:"filter"`
}

// Error codes of {"type":"error"} messages.
const (
	codeInvalidMessage        = "invalid_message"
	codeUnknownType           = "unknown_type"
	codeNotAuthenticated      = "not_authenticated"
	codeAlreadyAuthenticated  = "already_authenticated"
	codeInvalidToken          = "invalid_token"
	codeInvalidSubscription   = "invalid_subscription"
	codeDuplicateSubscription = "duplicate_subscription"
	codeUnknownSubscription   = "unknown_subscription"
	codeTooManySubscriptions  = "too_many_subscriptions"
	codeUnknownModel          = "unknown_model"
	codeUnknownEvent          = "unknown_event"
	codeForbiddenModel        = "forbidden_model"
	codeInvalidSince          = "invalid_since"
	codeUnavailable           = "unavailable"
	codeInvalidFilter         = "invalid_filter"
	codeForbiddenFilter       = "forbidden_filter"
	codeSubscriptionRevoked   = "subscription_revoked"
	codeTokenExpired          = "token_expired"
	codeTooManyAttempts       = "too_many_attempts"
)

var (
	msgAuthenticated = []byte(`{"type":"authenticated"}`)
	msgPong          = []byte(`{"type":"pong"}`)
	msgRefreshed     = []byte(`{"type":"refreshed"}`)
)

func jsonString(s string) []byte { return canon.AppendString(nil, s) }

func jsonStrings(values []string) []byte {
	b := []byte{'['}
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = canon.AppendString(b, v)
	}
	return append(b, ']')
}

// errorMessage builds {"type":"error","code","message","id"?}; id names the
// subscription the error is about, if any.
// Error replies quote the client's input, so they are clipped: a session
// may queue a few hundred replies, and each must stay small whatever the
// client sent.
const (
	maxErrorMessageBytes   = 1024
	maxSubscriptionIDBytes = 128
)

// clip returns s cut to at most n bytes at a UTF-8 boundary, with "…" after
// the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func errorMessage(code, message, subID string) []byte {
	var o canon.Object
	o.Add("type", jsonString("error"))
	o.Add("code", jsonString(code))
	o.Add("message", jsonString(clip(message, maxErrorMessageBytes)))
	if subID != "" {
		o.Add("id", jsonString(clip(subID, maxSubscriptionIDBytes)))
	}
	return o.AppendTo(nil)
}

// subscribedMessage builds the subscribe reply. liveFrom is null when no
// event was stored before the subscription went live. filter, the
// subscription's own, is present only when the subscribe set one.
func subscribedMessage(sub *subscription, liveFrom string) []byte {
	var o canon.Object
	o.Add("type", jsonString("subscribed"))
	o.Add("id", jsonString(sub.id))
	o.Add("models", jsonStrings(sub.modelNames))
	o.Add("events", jsonStrings(sub.eventNames))
	if len(sub.filters) > 0 {
		o.Add("filter", sub.filters.appendJSON(nil))
	}
	if liveFrom == "" {
		o.Add("liveFrom", []byte("null"))
	} else {
		o.Add("liveFrom", jsonString(liveFrom))
	}
	return o.AppendTo(nil)
}

func unsubscribedMessage(subID string) []byte {
	var o canon.Object
	o.Add("type", jsonString("unsubscribed"))
	o.Add("id", jsonString(subID))
	return o.AppendTo(nil)
}

// storedPayload holds the members of a stored event's payload that a
// WebSocket message carries, as their exact JSON bytes.
type storedPayload struct {
	InstanceID json.RawMessage `json:"instanceId"`
	Changes    json.RawMessage `json:"changes"`
	Old        json.RawMessage `json:"old"`
	Timestamp  json.RawMessage `json:"timestamp"`
	LSN        json.RawMessage `json:"lsn"`
}

// messageTypes maps generic event names to the message type that carries
// them. Semantic events are carried by type "event".
var messageTypes = map[string]string{
	"data.created":   "create",
	"data.updated":   "update",
	"data.deleted":   "delete",
	"data.truncated": "truncate",
}

// eventMessage builds the message for e: {"type","id","event","model",
// "instanceId","changes","old"?,"timestamp","lsn"}. The values of changes and
// old are the stored payload's bytes, unchanged.
func eventMessage(e store.Event) ([]byte, error) { return buildEventMessage(e, true) }

// buildEventMessage builds the message of e, with its old values when
// withOld is set.
func buildEventMessage(e store.Event, withOld bool) ([]byte, error) {
	var p storedPayload
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return nil, fmt.Errorf("decoding payload of event %s: %w", e.ID, err)
	}
	msgType, ok := messageTypes[e.Event]
	if !ok {
		msgType = "event"
	}

	var o canon.Object
	o.Add("type", jsonString(msgType))
	o.Add("id", jsonString(e.ID))
	o.Add("event", jsonString(e.Event))
	o.Add("model", jsonString(e.Model))
	o.Add("instanceId", orNull(p.InstanceID))
	o.Add("changes", orDefault(p.Changes, "{}"))
	if withOld && len(p.Old) > 0 && string(p.Old) != "null" {
		o.Add("old", p.Old)
	}
	o.Add("timestamp", orNull(p.Timestamp))
	o.Add("lsn", orNull(p.LSN))
	return o.AppendTo(nil), nil
}

func orNull(raw json.RawMessage) []byte { return orDefault(raw, "null") }

func orDefault(raw json.RawMessage, value string) []byte {
	if len(raw) == 0 {
		return []byte(value)
	}
	return raw
}

// quoteList names values in an error message: "a", "b".
func quoteList(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(quoted, ", ")
}
