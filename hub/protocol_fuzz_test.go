package hub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/store"
)

const (
	fuzzAdminToken = "fuzz-admin-token-0123456789"
	fuzzJWTSecret  = "fuzz-jwt-secret-0123456789abcdef"
)

// fuzzHub returns a Hub with a fixed catalog, enough for parsing and
// checking messages without a database.
func fuzzHub() *Hub {
	cfg := Config{
		AdminToken: config.Secret(fuzzAdminToken),
		JWTSecret:  config.Secret(fuzzJWTSecret),
		Catalog: func(context.Context) ([]string, []string, error) {
			return []string{"UserProfile", "Project", "User"}, []string{"project.status_changed"}, nil
		},
	}
	return &Hub{cfg: cfg.WithDefaults(), log: slog.New(slog.DiscardHandler), index: map[string]map[*client]int{}}
}

// fuzzJWT signs claims with fuzzJWTSecret.
func fuzzJWT(f *testing.F, claims jwt.MapClaims) string {
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(fuzzJWTSecret))
	if err != nil {
		f.Fatal(err)
	}
	return token
}

// validHS256 reports whether token's signature is the HMAC-SHA256 of its
// first two parts under fuzzJWTSecret, the only way a JWT may be accepted.
func validHS256(token string) bool {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return false
	}
	signature, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(fuzzJWTSecret))
	mac.Write([]byte(token[:i]))
	return hmac.Equal(signature, mac.Sum(nil))
}

// requireJSON fails unless msg is valid, canonical JSON.
func requireJSON(t *testing.T, what string, msg []byte) {
	t.Helper()
	if !json.Valid(msg) {
		t.Fatalf("%s is not valid JSON: %q", what, msg)
	}
	if canonical, err := canon.Canonicalize(nil, msg); err != nil || !bytes.Equal(canonical, msg) {
		t.Fatalf("%s is not canonical JSON (%v): %q", what, err, msg)
	}
}

// FuzzClientMessage parses a client frame as the hub's read loop does,
// checks its token and, for a subscribe, the subscription. No input may
// panic, only the admin token or a correctly signed JWT may authenticate,
// every reply must be canonical JSON, and an accepted subscription must stay
// within the catalog and the token's models and filter.
func FuzzClientMessage(f *testing.F) {
	pinned := fuzzJWT(f, jwt.MapClaims{"models": []string{"UserProfile"}, "filter": map[string]any{"UserProfile": map[string]any{"team_id": 7}}})
	for _, seed := range []string{
		`{"type":"ping"}`,
		`{"type":"authenticate","token":"` + fuzzAdminToken + `"}`,
		`{"type":"authenticate","token":"` + pinned + `"}`,
		`{"type":"refresh","token":"` + fuzzJWT(f, jwt.MapClaims{"exp": 4102444800}) + `"}`,
		`{"type":"authenticate","token":"eyJhbGciOiJub25lIn0.eyJtb2RlbHMiOm51bGx9."}`,
		`{"type":"subscribe","id":"s1","models":["UserProfile"],"events":["updated","delete","project.status_changed"],"filter":{"UserProfile":{"team_id":7,"name":"\u2028<&>"}},"since":"evt_00000000016b374800000000000"}`,
		`{"type":"subscribe","id":"s2","models":["UserProfile","Project","Nope"],"events":["created","exploded"]}`,
		`{"type":"subscribe","id":"s3","models":["Project"],"filter":{"UserProfile":{"team_id":true}}}`,
		`{"type":"subscribe","id":"","models":[]}`,
		`{"type":"subscribe","id":"s4","models":["User"],"filter":{"User":{"":1,"x":[1],"y":9007199254740992}}}`,
		`{"type":"unsubscribe","id":"s1"}`,
		`{"type":"subscribe","models":"UserProfile"}`,
		`[1,2,3]`, `{"type":`, "\xff\xfe", `{"type":"\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	h := fuzzHub()

	f.Fuzz(func(t *testing.T, data []byte) {
		var msg clientMessage
		if err := json.Unmarshal(data, &msg); err != nil {
			requireJSON(t, "invalid_message error", errorMessage(codeInvalidMessage, err.Error(), ""))
			return
		}
		requireJSON(t, "unknown_type error", errorMessage(codeUnknownType, "unknown message type "+quoteList([]string{msg.Type}), msg.ID))

		g, err := h.checkToken(msg.Token)
		if err != nil {
			requireJSON(t, "invalid_token error", errorMessage(codeInvalidToken, err.Error(), ""))
			g = &grant{models: map[string]bool{"UserProfile": true}}
		} else if msg.Token != fuzzAdminToken && !validHS256(msg.Token) {
			t.Fatalf("token %q was accepted without the admin token or a valid signature", msg.Token)
		}
		if msg.Type != "subscribe" {
			return
		}
		sub, subErr := h.parseSubscription(g, msg)
		if subErr != nil {
			requireJSON(t, "subscribe error", errorMessage(subErr.code, subErr.message, msg.ID))
			return
		}
		checkSubscription(t, g, sub)
		requireJSON(t, "subscribed reply", subscribedMessage(sub, "evt_00000000016b374800000000000"))
		e := store.Event{ID: "evt_00000000016b374800000000001", Event: "data.updated", Model: "UserProfile",
			Payload: []byte(`{"changes":{"team_id":7},"old":{"team_id":"7","name":null}}`)}
		row := newEventRow(&e)
		_ = sub.matches(&e, row) && g.permits(&e, row)
	})
}

// checkSubscription checks that sub names only catalog models that g
// allows, filters only its own models and pins no column to a value other
// than the one g pins.
func checkSubscription(t *testing.T, g *grant, sub *subscription) {
	t.Helper()
	for m := range sub.models {
		if m != "UserProfile" && m != "Project" && m != "User" {
			t.Fatalf("subscription accepted model %q, which the catalog lacks", m)
		}
		if !g.allows(m) {
			t.Fatalf("subscription accepted model %q, which the token may not see", m)
		}
	}
	for m, f := range sub.filters {
		if !sub.models[m] {
			t.Fatalf("subscription filters model %q outside its models", m)
		}
		for column, v := range f {
			if p, ok := g.filters[m][column]; ok && !bytes.Equal(p.raw, v.raw) {
				t.Fatalf("subscription pins %s.%s to %s, but the token pins %s", m, column, v.raw, p.raw)
			}
		}
	}
}

// FuzzFilterValue checks that a filter value matches its own canonical
// JSON, and that two values that both parse match exactly when their
// canonical forms are equal.
func FuzzFilterValue(f *testing.F) {
	for _, seed := range [][2]string{
		{`"a"`, `"\u0061"`}, {`1`, `1.0`}, {`-0`, `0`}, {`true`, `"true"`}, {`9007199254740991`, `9007199254740992`},
		{`"x"`, `null`}, {`42`, `4.2e1`}, {` 7 `, `7`}, {`"\ud800"`, `"\ufffd"`},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	f.Fuzz(func(t *testing.T, pinned, column []byte) {
		if !json.Valid(pinned) || !json.Valid(column) {
			return // both come from decoded JSON documents
		}
		v, err := parseFilterValue(pinned)
		if err != nil {
			return
		}
		if !v.matches(v.raw) {
			t.Fatalf("value %s does not match its own canonical form %s", pinned, v.raw)
		}
		w, err := parseFilterValue(column)
		if err != nil {
			return
		}
		if got, want := v.matches(column), bytes.Equal(v.raw, w.raw); got != want {
			t.Fatalf("value %s matches column %s: %v, but canonical forms %s and %s equal: %v", pinned, column, got, v.raw, w.raw, want)
		}
	})
}
