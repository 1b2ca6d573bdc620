package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names. Every delivery carries all three.
const (
	headerID        = "webhook-id"
	headerTimestamp = "webhook-timestamp"
	headerSignature = "webhook-signature"
)

// signatureVersion tags an HMAC-SHA256 entry in the webhook-signature header.
const signatureVersion = "v1"

// bodySignaturePrefix starts the value of the body's signature member.
const bodySignaturePrefix = "sha256="

// bodySignatureKey is the name of the body member that carries the body
// signature. SignBody writes it as the last member.
const bodySignatureKey = "signature"

// Sign returns the webhook-signature header value for a delivery: one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" entry per secret, separated
// by spaces, in the order given. During a rotation's grace period the caller
// passes the new secret first and the old one second. The timestamp is
// truncated to Unix seconds and must equal the webhook-timestamp header.
// Zero Secrets, which have no key, are skipped, so a header signed with an
// empty key is never sent.
func Sign(id string, timestamp time.Time, body []byte, secrets ...Secret) string {
	var header strings.Builder
	for _, secret := range secrets {
		if len(secret.key) == 0 {
			continue
		}
		if header.Len() > 0 {
			header.WriteByte(' ')
		}
		header.WriteString(signatureVersion)
		header.WriteByte(',')
		header.WriteString(base64.StdEncoding.EncodeToString(
			headerMAC(secret.key, id, timestamp.Unix(), body)))
	}
	return header.String()
}

// headerMAC returns the HMAC-SHA256 of "id.timestamp.body" that the
// Standard Webhooks specification signs.
func headerMAC(key []byte, id string, unixSeconds int64, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, unixSeconds, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// bodyMAC returns the HMAC-SHA256 of a payload without its signature member.
func bodyMAC(key, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	return mac.Sum(nil)
}

// SignBody returns payload with the member "signature":"sha256=<hex>" added
// as its last member, where hex is the HMAC-SHA256 of payload with the
// secret's key. A receiver that removes the member from the parsed body and
// signs JSON.stringify of the rest gets the same HMAC, provided payload is
// canonical JSON as package canon writes it and has no top-level signature
// member of its own. Stored event payloads meet both conditions. SignBody
// checks only that payload is an object without surrounding whitespace,
// because a full check would parse every payload again.
func SignBody(payload []byte, secret Secret) ([]byte, error) {
	if len(secret.key) == 0 {
		return nil, errors.New("signing a payload: the secret has no key; use ParseSecret or GenerateSecret")
	}
	if err := checkObjectBounds(payload); err != nil {
		return nil, err
	}
	sum := bodyMAC(secret.key, payload)

	last := len(payload) - 1
	out := make([]byte, 0, len(payload)+len(`,"signature":"sha256="`)+hex.EncodedLen(len(sum)))
	out = append(out, payload[:last]...)
	if last > 1 {
		out = append(out, ',')
	}
	out = append(out, `"`+bodySignatureKey+`":"`+bodySignaturePrefix...)
	out = hex.AppendEncode(out, sum)
	return append(out, `"}`...), nil
}

// checkObjectBounds checks that payload starts with '{' and ends with '}'
// with no whitespace or trailing comma before the closing brace, which is
// true of every canonical JSON object.
func checkObjectBounds(payload []byte) error {
	n := len(payload)
	if n < 2 || payload[0] != '{' || payload[n-1] != '}' {
		return errors.New("signing a payload: the payload is not a canonical JSON object: it must start with '{' and end with '}'")
	}
	switch payload[n-2] {
	case ' ', '\t', '\n', '\r', ',':
		return errors.New("signing a payload: the payload is not a canonical JSON object: whitespace or a comma precedes the closing '}'")
	}
	return nil
}
