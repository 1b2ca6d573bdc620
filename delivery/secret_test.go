package delivery

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSecret(t *testing.T) {
	t.Parallel()

	key32 := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name    string
		in      string
		wantKey []byte
		wantErr string
	}{
		{
			name:    "WhsecPadded",
			in:      "whsec_" + base64.StdEncoding.EncodeToString(key32),
			wantKey: key32,
		},
		{
			name:    "WhsecUnpadded",
			in:      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			wantKey: mustDecode(t, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
		},
		{name: "RawMinimum", in: "0123456789abcdef", wantKey: []byte("0123456789abcdef")},
		{name: "RawMultibyte", in: "ключ-секрет", wantKey: []byte("ключ-секрет")},
		{name: "Empty", in: "", wantErr: "secret is empty"},
		{name: "RawTooShort", in: "short-secret", wantErr: "12-byte key, need at least 16 bytes"},
		{
			name:    "WhsecTooShort",
			in:      "whsec_" + base64.StdEncoding.EncodeToString(key32[:15]),
			wantErr: "15-byte key, need at least 16 bytes",
		},
		{name: "WhsecEmpty", in: "whsec_", wantErr: "0-byte key"},
		{name: "WhsecNotBase64", in: "whsec_not base64 at all!!", wantErr: "not standard base64"},
		{name: "WhsecURLAlphabet", in: "whsec_q83vEjRWeJq83vEjRWeJ-_", wantErr: "not standard base64"},
		{
			name:    "WhsecLineBreak",
			in:      "whsec_" + base64.StdEncoding.EncodeToString(key32[:18]) + "\n",
			wantErr: "not standard base64",
		},
		{name: "WhsecNonzeroPaddingBits", in: "whsec_AAAAAAAAAAAAAAAAAAAAAB==", wantErr: "not standard base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSecret(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				if secretText := strings.TrimPrefix(tt.in, "whsec_"); secretText != "" {
					require.NotContains(t, err.Error(), secretText)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantKey, got.Key())
			require.Equal(t, tt.in, got.Reveal())
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawStdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

func TestGenerateSecret(t *testing.T) {
	t.Parallel()

	first, err := GenerateSecret()
	require.NoError(t, err)
	second, err := GenerateSecret()
	require.NoError(t, err)

	require.Len(t, first.Key(), 32)
	require.True(t, strings.HasPrefix(first.Reveal(), "whsec_"))
	require.Len(t, first.Reveal(), len("whsec_")+44)
	require.NotEqual(t, first.Reveal(), second.Reveal())

	parsed, err := ParseSecret(first.Reveal())
	require.NoError(t, err)
	require.Equal(t, first.Key(), parsed.Key())
}

func TestSecretRedacted(t *testing.T) {
	t.Parallel()

	secret, err := ParseSecret("raw-secret-0123456789")
	require.NoError(t, err)
	wrapped := struct{ S Secret }{secret}

	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		out := fmt.Sprintf(verb, secret) + fmt.Sprintf(verb, wrapped) + fmt.Sprintf(verb, &secret)
		require.NotContains(t, out, "raw-secret", "verb %s", verb)
		require.NotContains(t, out, fmt.Sprintf("%x", secret.Key()[:4]), "verb %s", verb)
		require.NotContains(t, out, "114", "verb %s prints key bytes", verb)
	}
	require.Equal(t, "[redacted]", secret.String())
	require.Equal(t, "[redacted]", fmt.Sprint(secret))

	var logged bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logged, nil))
	logger.Info("registered", "secret", secret, "wrapped", wrapped)
	require.Contains(t, logged.String(), `"secret":"[redacted]"`)
	require.NotContains(t, logged.String(), "raw-secret")
}

func TestSecretKeyIsCopy(t *testing.T) {
	t.Parallel()

	secret, err := ParseSecret("raw-secret-0123456789")
	require.NoError(t, err)
	key := secret.Key()
	key[0] = 'X'
	require.Equal(t, []byte("raw-secret-0123456789"), secret.Key())
}
