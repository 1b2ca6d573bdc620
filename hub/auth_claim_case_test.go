package hub_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
)

// signRawHS256 signs payload as it is, so a test can send member names
// that a map cannot hold, such as "filter" next to "Filter".
func signRawHS256(key, payload string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// JWT claim names are case-sensitive JSON member names, but Go's
// encoding/json matches member names case-insensitively, so a "Filter" or
// "Models" member, a different claim to every other JWT library, replaced
// the filter or models claim and widened what the token may see.
func TestJWTClaimNamesCaseSensitive(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())

	widened := dial(t, b.url)
	widened.authenticate(signRawHS256(jwtSecret, `{"models":["Project"],"Models":["Project","UserProfile"]}`))
	widened.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}})
	m := widened.read()
	require.Equal(t, "error", m.Type, "a Models member granted UserProfile: %s", m.raw)

	unpinned := dial(t, b.url)
	unpinned.authenticate(signRawHS256(jwtSecret, `{"models":["Project"],"filter":{"Project":{"owner_id":1}},"Filter":{}}`))
	unpinned.subscribe("s1", []string{"Project"}, nil)
	b.write(t, b.event("Project", "data.created", `{"owner_id":2}`), b.event("Project", "data.created", `{"owner_id":1}`))
	m = unpinned.readType("create")
	require.JSONEq(t, `{"owner_id":1}`, string(m.Changes), "a Filter member removed the owner_id pin")
}
