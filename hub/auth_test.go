package hub_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

func signHS256(t *testing.T, key string, claims jwt.MapClaims) string {
	t.Helper()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	require.NoError(t, err)
	return token
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	future := time.Now().Add(time.Hour).Unix()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"exp": future}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"exp": future}).SignedString([]byte(jwtSecret))
	require.NoError(t, err)

	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"AdminToken", adminToken, true},
		{"ValidJWT", signHS256(t, jwtSecret, jwt.MapClaims{"exp": future, "models": []string{"UserProfile"}}), true},
		{"JWTWithoutExpiry", signHS256(t, jwtSecret, jwt.MapClaims{"sub": "ui"}), true},
		{"WrongToken", "not-the-admin-token", false},
		{"EmptyToken", "", false},
		{"ExpiredJWT", signHS256(t, jwtSecret, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}), false},
		{"AlgNone", none, false},
		{"WrongKey", signHS256(t, "another-secret-0123456789", jwt.MapClaims{"exp": future}), false},
		{"OtherAlgorithm", hs512, false},
		{"ModelsNotAList", signHS256(t, jwtSecret, jwt.MapClaims{"models": "UserProfile"}), false},
		{"FilterNotAnObject", signHS256(t, jwtSecret, jwt.MapClaims{"filter": "owner_id=1"}), false},
		{"FilterValueNotScalar", signHS256(t, jwtSecret, jwt.MapClaims{"filter": map[string]any{"UserProfile": map[string]any{"owner_id": []int{1}}}}), false},
		{"FilterValueNull", signHS256(t, jwtSecret, jwt.MapClaims{"filter": map[string]any{"UserProfile": map[string]any{"owner_id": nil}}}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, b.url)

			c.send(map[string]string{"type": "authenticate", "token": tt.token})
			if tt.ok {
				c.readType("authenticated")
				c.send(map[string]string{"type": "ping"})
				c.readType("pong")
				return
			}
			closeErr, msgs := c.readClose()
			require.Equal(t, 4001, closeErr.Code)
			require.Len(t, msgs, 1)
			require.Equal(t, "error", msgs[0].Type)
			require.Equal(t, "invalid_token", msgs[0].Code)
		})
	}
}

func TestAuthenticateTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AuthTimeout = 300 * time.Millisecond
	b := setup(t, cfg)
	c := dial(t, b.url)

	closeErr, msgs := c.readClose()

	require.Equal(t, 4011, closeErr.Code)
	require.Empty(t, msgs)
}

func TestMessageBeforeAuthenticate(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile"}})
	closeErr, msgs := c.readClose()

	require.Equal(t, 4011, closeErr.Code)
	require.Len(t, msgs, 1)
	require.Equal(t, "not_authenticated", msgs[0].Code)
}

func TestJWTModelsClaimLimitsSubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(signHS256(t, jwtSecret, jwt.MapClaims{"models": []string{"UserProfile"}}))

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"UserProfile", "Project"}})
	m := c.readType("error")
	require.Equal(t, "forbidden_model", m.Code)
	require.Equal(t, "s1", m.ID)
	require.Contains(t, m.Message, `"Project"`)
	require.NotContains(t, m.Message, `"UserProfile"`)

	c.subscribe("s1", []string{"UserProfile"}, nil)
	b.write(t, b.event("Project", "data.created", `{"n":1}`), b.event("UserProfile", "data.created", `{"n":2}`))
	got := c.readType("create")
	require.Equal(t, "UserProfile", got.Model)
}

// signRawHS256 signs payload as it is, so a test can send member names
// that a map cannot hold, such as "filter" next to "Filter".
func signRawHS256(key, payload string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// JWT claim names match exactly, but Go's encoding/json matches member
// names without case. A "Models" or "Filter" member once replaced the
// models or filter claim and widened what the token may see.
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

// Go's encoding/json writes a nil []string as null, so an issuer may send
// "models": null for a user allowed no model. The token must be rejected
// or see nothing, not every model as when the claim is missing.
func TestJWTModelsClaimNullSeesNoModel(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	var issued struct {
		Models []string `json:"models"`
	}
	raw, err := json.Marshal(issued)
	require.NoError(t, err)
	require.JSONEq(t, `{"models":null}`, string(raw))
	c := dial(t, b.url)

	c.send(map[string]string{"type": "authenticate", "token": signHS256(t, jwtSecret, jwt.MapClaims{"models": nil})})
	m := c.read()
	if m.Type == "error" {
		require.Equal(t, "invalid_token", m.Code)
		return
	}
	require.Equal(t, "authenticated", m.Type, "message %s", m.raw)

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"Project"}})
	m = c.read()
	require.Equal(t, "error", m.Type, "a token with models: null subscribed to Project: %s", m.raw)
	require.Equal(t, "forbidden_model", m.Code)
}

// A filter claim of null, Go's encoding/json output for a nil map, would
// otherwise read as no filter and show every row of the allowed models.
func TestJWTFilterClaimNullRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)

	c.send(map[string]string{"type": "authenticate", "token": signHS256(t, jwtSecret, jwt.MapClaims{"models": []string{"Project"}, "filter": nil})})
	m := c.read()

	require.Equal(t, "error", m.Type, "message %s", m.raw)
	require.Equal(t, "invalid_token", m.Code)
	require.Contains(t, m.Message, "filter claim is null")
}

// An empty filter claim pins nothing, like a model that pins no column.
func TestJWTFilterClaimEmptyRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)

	c.send(map[string]string{"type": "authenticate", "token": signHS256(t, jwtSecret, jwt.MapClaims{"filter": map[string]any{}})})
	m := c.read()

	require.Equal(t, "error", m.Type, "message %s", m.raw)
	require.Equal(t, "invalid_token", m.Code)
	require.Contains(t, m.Message, "filter claim pins no model")
}
