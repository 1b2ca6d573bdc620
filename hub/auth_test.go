package hub_test

import (
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
