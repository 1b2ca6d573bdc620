package delivery

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// secretPrefix marks a secret whose key is the base64 text after the prefix,
// as the Standard Webhooks specification defines.
const secretPrefix = "whsec_"

// minKeyBytes is the shortest HMAC key a secret may carry. Shorter keys are
// open to brute force.
const minKeyBytes = 16

// generatedKeyBytes is the key size of GenerateSecret, the output size of
// SHA-256.
const generatedKeyBytes = 32

// redacted replaces a secret wherever it would be printed or logged.
const redacted = "[redacted]"

// Secret is a webhook signing secret: the HMAC-SHA256 key and the text the
// user gave or was shown. Printing or logging a Secret writes "[redacted]";
// only Reveal returns the text.
type Secret struct {
	key  []byte
	text string
}

// ParseSecret parses a signing secret. A secret that starts with "whsec_" has
// its key in standard base64 after the prefix, with or without padding. Any
// other secret is its own key, as raw UTF-8 bytes. The key must have at least
// 16 bytes. Errors never contain the secret.
func ParseSecret(s string) (Secret, error) {
	if s == "" {
		return Secret{}, errors.New("secret is empty")
	}
	key := []byte(s)
	if encoded, ok := strings.CutPrefix(s, secretPrefix); ok {
		var err error
		key, err = decodeKey(encoded)
		if err != nil {
			return Secret{}, err
		}
	}
	if len(key) < minKeyBytes {
		return Secret{}, fmt.Errorf(
			"secret has a %d-byte key, need at least %d bytes; omit the secret to have one generated",
			len(key), minKeyBytes)
	}
	return Secret{key: key, text: s}, nil
}

// decodeKey decodes the base64 part of a whsec_ secret. It rejects line
// breaks and nonzero padding bits, which Go's decoder would otherwise skip,
// so that every accepted secret has one key in any receiver's decoder. The
// error names neither the text nor the decoder's offset, which would hint at
// its content.
func decodeKey(encoded string) ([]byte, error) {
	encoding := base64.StdEncoding.Strict()
	if !strings.HasSuffix(encoded, "=") {
		encoding = base64.RawStdEncoding.Strict()
	}
	key, err := encoding.DecodeString(encoded)
	if err != nil || strings.ContainsAny(encoded, "\r\n") {
		return nil, errors.New("invalid secret: the text after whsec_ is not standard base64")
	}
	return key, nil
}

// GenerateSecret returns a new secret: "whsec_" followed by the padded
// standard base64 of 32 random bytes.
func GenerateSecret() (Secret, error) {
	key := make([]byte, generatedKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, fmt.Errorf("reading random bytes for a secret: %w", err)
	}
	return Secret{key: key, text: secretPrefix + base64.StdEncoding.EncodeToString(key)}, nil
}

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns a redacted form for the %#v verb.
func (s Secret) GoString() string { return "delivery.Secret{" + redacted + "}" }

// Format writes "[redacted]" for every fmt verb, so that no verb such as %d
// or %+v prints the key.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(redacted))
}

// LogValue returns "[redacted]", so that log/slog never writes the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Reveal returns the secret in the form the user gave or was shown, for
// showing it once when it is created.
func (s Secret) Reveal() string { return s.text }

// Key returns a copy of the HMAC key.
func (s Secret) Key() []byte { return append([]byte(nil), s.key...) }
