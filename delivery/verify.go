package delivery

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/civicbase/civicbase/canon"
)

// Errors returned by Verify, wrapped with the detail of what failed.
var (
	// ErrMissingHeaders means a Standard Webhooks header is missing or empty.
	ErrMissingHeaders = errors.New("missing webhook headers")
	// ErrTimestamp means webhook-timestamp is not an integer or lies outside
	// the tolerance around the current time.
	ErrTimestamp = errors.New("invalid webhook timestamp")
	// ErrSignature means no webhook-signature entry matches, or the body's
	// signature member does not match the body.
	ErrSignature = errors.New("webhook signature mismatch")
)

// defaultTolerance is the largest difference between webhook-timestamp and
// the receiver's clock that Verify accepts when given no tolerance. The
// standardwebhooks npm package (version 1.1.1) uses the same 5 minutes.
const defaultTolerance = 5 * time.Minute

// Verify checks a received webhook, as a receiver written in Go would. secret
// is the endpoint's signing secret in the form ParseSecret accepts, headers
// are the request headers and body is the request body exactly as received.
//
// Verify requires the webhook-id, webhook-timestamp and webhook-signature
// headers. The timestamp must lie within tolerance of the current time, or
// within 5 minutes when tolerance is zero or negative. At least one
// space-separated "v1,<base64>" entry of webhook-signature must equal the
// HMAC-SHA256 of "id.timestamp.body", compared in constant time. Entries of
// other versions are ignored.
//
// When the body is a JSON object with a top-level "signature" member, Verify
// also checks that member as a JavaScript receiver would. It removes the
// member from the parsed object and writes the rest as canonical JSON, the
// bytes JSON.stringify writes. The member must be "sha256=" followed by the
// hex HMAC-SHA256 of those bytes. For every body that SignBody writes, the
// bytes are the body without its trailing `,"signature":"…"` member.
//
// The error wraps ErrMissingHeaders, ErrTimestamp or ErrSignature and
// describes what failed. An invalid secret returns an error that wraps none of them.
func Verify(secret string, headers http.Header, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, headers, body, tolerance, time.Now())
}

// verifyAt is Verify with the receiver's clock reading as now.
func verifyAt(secret string, headers http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	parsed, err := ParseSecret(secret)
	if err != nil {
		return fmt.Errorf("verifying a webhook: %w", err)
	}
	id, timestampText, signatures, err := readHeaders(headers)
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = defaultTolerance
	}
	timestamp, err := checkTimestamp(timestampText, now, tolerance)
	if err != nil {
		return err
	}
	entry, err := checkHeaderSignature(parsed.key, id, timestamp, body, signatures)
	if err != nil {
		return err
	}
	if entry > 0 {
		// The secret matched a later entry: it is the previous secret during
		// a rotation's grace period. The body member is signed with the new
		// secret only, and the header entry already covers every byte of the
		// body, so the member is not checked.
		return nil
	}
	return checkBodySignature(parsed.key, body)
}

// readHeaders returns the three Standard Webhooks header values, or an error
// that lists every missing one.
func readHeaders(headers http.Header) (id, timestamp, signatures string, err error) {
	var missing []string
	values := make([]string, 3)
	for i, name := range []string{headerID, headerTimestamp, headerSignature} {
		values[i] = strings.Join(headerValues(headers, name), " ")
		if strings.TrimSpace(values[i]) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return "", "", "", fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}
	return values[0], strings.TrimSpace(values[1]), values[2], nil
}

// headerValues returns the values of the header name. It also finds keys that
// are not in canonical form, as in a header map built by hand.
func headerValues(headers http.Header, name string) []string {
	if values := headers.Values(name); len(values) > 0 {
		return values
	}
	for key, values := range headers {
		if strings.EqualFold(key, name) {
			return values
		}
	}
	return nil
}

// checkTimestamp parses webhook-timestamp as Unix seconds and checks that it
// lies within tolerance of now.
func checkTimestamp(text string, now time.Time, tolerance time.Duration) (int64, error) {
	seconds, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not an integer number of Unix seconds",
			ErrTimestamp, headerTimestamp, truncate(text, 40))
	}
	// The comparison uses whole seconds, as the standardwebhooks npm package
	// does. time.Unix and Duration would overflow for timestamps hundreds of
	// years away, which nowSeconds ± toleranceSeconds cannot.
	nowSeconds, toleranceSeconds := now.Unix(), int64(tolerance/time.Second)
	switch {
	case seconds < nowSeconds-toleranceSeconds:
		return 0, fmt.Errorf("%w: %s %d is %s older than the current time, beyond the %s tolerance",
			ErrTimestamp, headerTimestamp, seconds, formatSeconds(uint64(nowSeconds)-uint64(seconds)), tolerance)
	case seconds > nowSeconds+toleranceSeconds:
		return 0, fmt.Errorf("%w: %s %d is %s ahead of the current time, beyond the %s tolerance",
			ErrTimestamp, headerTimestamp, seconds, formatSeconds(uint64(seconds)-uint64(nowSeconds)), tolerance)
	}
	return seconds, nil
}

// formatSeconds formats a positive number of seconds as a Duration, or as
// seconds when it is too large for one.
func formatSeconds(seconds uint64) string {
	if seconds > math.MaxInt64/uint64(time.Second) {
		return strconv.FormatUint(seconds, 10) + "s"
	}
	return (time.Duration(seconds) * time.Second).String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// checkHeaderSignature checks that at least one v1 entry of the
// webhook-signature header is the HMAC of "id.timestamp.body", and returns
// the position of the first matching v1 entry.
func checkHeaderSignature(key []byte, id string, timestamp int64, body []byte, header string) (int, error) {
	want := headerMAC(key, id, timestamp, body)
	checked := 0
	for _, entry := range strings.Fields(header) {
		version, encoded, ok := strings.Cut(entry, ",")
		if !ok || version != signatureVersion {
			continue
		}
		checked++
		got, err := base64.StdEncoding.DecodeString(encoded)
		if err == nil && hmac.Equal(got, want) {
			return checked - 1, nil
		}
	}
	if checked == 0 {
		return 0, fmt.Errorf("%w: %s has no %s entry", ErrSignature, headerSignature, signatureVersion)
	}
	return 0, fmt.Errorf("%w: none of the %d %s entries in %s matches the body; "+
		"check the secret, and verify the body exactly as received, before any parsing",
		ErrSignature, checked, signatureVersion, headerSignature)
}

// checkBodySignature checks the body's top-level signature member, when the
// body is a JSON object that has one.
func checkBodySignature(key, body []byte) error {
	members, ok := objectMembers(body)
	if !ok {
		return nil
	}
	var value json.RawMessage
	for _, m := range members {
		if m.key == bodySignatureKey {
			value = m.value // JSON.parse keeps the last of duplicate keys
		}
	}
	if value == nil {
		return nil
	}
	got, err := decodeBodySignature(value)
	if err != nil {
		return err
	}
	rest, err := canonicalRest(members)
	if err != nil {
		return fmt.Errorf("%w: canonicalizing the body without its signature member: %w", ErrSignature, err)
	}
	if !hmac.Equal(got, bodyMAC(key, rest)) {
		return fmt.Errorf("%w: the body's %s member does not match the body without it",
			ErrSignature, bodySignatureKey)
	}
	return nil
}

// decodeBodySignature returns the HMAC in a signature member whose value
// must be a JSON string "sha256=<hex>".
func decodeBodySignature(value json.RawMessage) ([]byte, error) {
	var text string
	if err := json.Unmarshal(value, &text); err != nil {
		return nil, fmt.Errorf("%w: the body's %s member is not a string", ErrSignature, bodySignatureKey)
	}
	encoded, ok := strings.CutPrefix(text, bodySignaturePrefix)
	if !ok {
		return nil, fmt.Errorf("%w: the body's %s member does not start with %q",
			ErrSignature, bodySignatureKey, bodySignaturePrefix)
	}
	sum, err := hex.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("%w: the body's %s member is not %s followed by hex digits",
			ErrSignature, bodySignatureKey, bodySignaturePrefix)
	}
	return sum, nil
}

// rawMember is one top-level member of a JSON object: its decoded key and
// its value as source text.
type rawMember struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the top-level members of body in source order, or
// false when body is not a single valid JSON object.
func objectMembers(body []byte) ([]rawMember, bool) {
	decoder := json.NewDecoder(bytes.NewReader(body))
	if token, err := decoder.Token(); err != nil || token != json.Delim('{') {
		return nil, false
	}
	var members []rawMember
	for decoder.More() {
		token, err := decoder.Token()
		key, ok := token.(string)
		if err != nil || !ok {
			return nil, false
		}
		var value json.RawMessage
		if err := decoder.Decode(&value); err != nil {
			return nil, false
		}
		members = append(members, rawMember{key: key, value: value})
	}
	if token, err := decoder.Token(); err != nil || token != json.Delim('}') {
		return nil, false
	}
	if _, err := decoder.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return members, true
}

// canonicalRest returns the members other than the signature member as
// JSON.stringify(rest) writes them after
// `const {signature, ...rest} = JSON.parse(body)`.
func canonicalRest(members []rawMember) ([]byte, error) {
	var rest canon.Object
	for _, m := range members {
		if m.key == bodySignatureKey {
			continue
		}
		value, err := canon.Canonicalize(nil, m.value)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", truncate(m.key, 40), err)
		}
		rest.Add(m.key, value)
	}
	return rest.AppendTo(nil), nil
}
