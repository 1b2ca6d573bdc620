package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test vector of the Standard Webhooks specification.
const (
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	secret, err := ParseSecret(s)
	require.NoError(t, err)
	return secret
}

func TestSignSpecificationVector(t *testing.T) {
	t.Parallel()

	secret := mustSecret(t, vectorSecret)
	got := Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody), secret)
	require.Equal(t, vectorSignature, got)

	// The header carries whole seconds, so a fraction does not change it.
	got = Sign(vectorID, time.Unix(vectorTimestamp, 999_999_999), []byte(vectorBody), secret)
	require.Equal(t, vectorSignature, got)

	headers := http.Header{}
	headers.Set("webhook-id", vectorID)
	headers.Set("webhook-timestamp", strconv.Itoa(vectorTimestamp))
	headers.Set("webhook-signature", got)
	now := time.Unix(vectorTimestamp+10, 0)
	require.NoError(t, verifyAt(vectorSecret, headers, []byte(vectorBody), 0, now))
}

func TestSignTwoSecrets(t *testing.T) {
	t.Parallel()

	current := mustSecret(t, "new-secret-0123456789")
	previous := mustSecret(t, vectorSecret)
	timestamp := time.Now()
	body := []byte(`{"a":1}`)

	got := Sign("evt_1", timestamp, body, current, previous)
	entries := strings.Split(got, " ")
	require.Len(t, entries, 2)
	require.Equal(t, Sign("evt_1", timestamp, body, current), entries[0])
	require.Equal(t, Sign("evt_1", timestamp, body, previous), entries[1])

	headers := deliveryHeaders("evt_1", timestamp, got)
	require.NoError(t, Verify(current.Reveal(), headers, body, 0))
	require.NoError(t, Verify(previous.Reveal(), headers, body, 0))
	require.ErrorIs(t, Verify("other-secret-0123456789", headers, body, 0), ErrSignature)
}

func TestSignSkipsZeroSecret(t *testing.T) {
	t.Parallel()

	secret := mustSecret(t, vectorSecret)
	got := Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody), Secret{}, secret, Secret{})
	require.Equal(t, vectorSignature, got)
	require.Empty(t, Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody), Secret{}))
}

func TestSignBody(t *testing.T) {
	t.Parallel()

	secret := mustSecret(t, "raw-secret-0123456789")
	mac := func(payload string) string {
		h := hmac.New(sha256.New, []byte("raw-secret-0123456789"))
		h.Write([]byte(payload))
		return hex.EncodeToString(h.Sum(nil))
	}
	tests := []struct {
		name    string
		payload string
		want    string
		wantErr string
	}{
		{name: "Object", payload: `{"a":1}`, want: `{"a":1,"signature":"sha256=` + mac(`{"a":1}`) + `"}`},
		{name: "EmptyObject", payload: `{}`, want: `{"signature":"sha256=` + mac(`{}`) + `"}`},
		{
			name:    "NestedObjectLast",
			payload: `{"a":{"b":{}}}`,
			want:    `{"a":{"b":{}},"signature":"sha256=` + mac(`{"a":{"b":{}}}`) + `"}`,
		},
		{name: "Empty", payload: ``, wantErr: "not a canonical JSON object"},
		{name: "Array", payload: `[1]`, wantErr: "not a canonical JSON object"},
		{name: "String", payload: `"{}"`, wantErr: "not a canonical JSON object"},
		{name: "OpenBrace", payload: `{`, wantErr: "not a canonical JSON object"},
		{name: "TrailingSpace", payload: `{"a":1} `, wantErr: "not a canonical JSON object"},
		{name: "SpaceBeforeBrace", payload: `{"a":1 }`, wantErr: "whitespace or a comma"},
		{name: "EmptyWithSpace", payload: `{ }`, wantErr: "whitespace or a comma"},
		{name: "TrailingComma", payload: `{"a":1,}`, wantErr: "whitespace or a comma"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := SignBody([]byte(tt.payload), secret)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}

func TestSignBodyZeroSecret(t *testing.T) {
	t.Parallel()

	_, err := SignBody([]byte(`{"a":1}`), Secret{})
	require.ErrorContains(t, err, "the secret has no key")
}

func TestSignBodyKeepsPayload(t *testing.T) {
	t.Parallel()

	// The payload has spare capacity, which SignBody must not write into.
	buffer := make([]byte, 64)
	payload := buffer[:copy(buffer, `{"a":1}`)]
	_, err := SignBody(payload, mustSecret(t, vectorSecret))
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, string(payload))
	require.Equal(t, make([]byte, 64-len(payload)), buffer[len(payload):])
}

// deliveryHeaders returns the Standard Webhooks headers of a delivery.
func deliveryHeaders(id string, timestamp time.Time, signature string) http.Header {
	headers := http.Header{}
	headers.Set("webhook-id", id)
	headers.Set("webhook-timestamp", strconv.FormatInt(timestamp.Unix(), 10))
	headers.Set("webhook-signature", signature)
	return headers
}
