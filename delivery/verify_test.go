package delivery

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/canon"
)

// hardPayload is a stored event payload, canonical as package canon writes
// it, with a value that encoding/json and JSON.stringify write differently.
type hardPayload struct {
	name    string
	payload []byte
}

// hardPayloadSources are the source texts of the hard payloads, before
// canonicalization.
var hardPayloadSources = []struct{ name, source string }{
	{"EmptyObject", `{}`},
	{"BigIntegers", `{"big":12345678901234567890,"min":-9223372036854775808,"unsafe":9007199254740993,"safe":9007199254740991}`},
	{"Numerics", `{"price":0.1000000000000000000001,"huge":1e400,"small":1.5e-7,"large":1e21,"third":0.3333333333333333}`},
	{"NegativeZero", `{"zero":-0,"zeroFraction":-0.0,"list":[-0,0]}`},
	{"OnePointZero", `{"one":1.0,"hundred":1e2,"tenth":1.00e-1}`},
	{"HTMLCharacters", `{"html":"<script>if (a < b && c > d) {}</script>","key<>&":"&amp;"}`},
	{"LineSeparators", `{"text":"a\u2028b\u2029c","raw":"x` + "\u2028\u2029" + `y"}`},
	{"Emoji", `{"emoji":"😀 \ud83c\udf89 é ü 日本","flag":"🇳🇱","👍":1}`},
	{"ControlCharacters", `{"c":"\u0000\u0001\u001f\b\f\n\r\t\"\\\/\u007f"}`},
	{"IntegerLikeKeys", `{"name":"x","10":"ten","2":"two","02":"leading zero","4294967295":"too big","-1":"negative","1.5":"fraction"}`},
	{"NestedIntegerLikeKeys", `{"changes":{"10":1,"2":2,"b":3,"a":4},"old":{"10":[{"2":0,"1":0}]}}`},
	{"Event", `{"id":"evt_0000000001","event":"data.updated","model":"UserProfile","table":"public.user_profiles",` +
		`"instanceId":"profile_123","changes":{"10":"<b>&</b>","2":-0,"balance":12345678901234567890.50,` +
		`"ratio":1.0,"bio":"line\u2028sep 😀"},"old":{"2":1e2},"timestamp":1632150985,` +
		`"commitTime":"2021-09-20T15:16:25.123456Z","lsn":"0/16B3748","txid":7421}`},
}

func hardPayloads(t *testing.T) []hardPayload {
	t.Helper()
	payloads := make([]hardPayload, 0, len(hardPayloadSources))
	for _, src := range hardPayloadSources {
		payload, err := canon.Canonicalize(nil, []byte(src.source))
		require.NoError(t, err, "canonicalizing %s", src.name)
		payloads = append(payloads, hardPayload{name: src.name, payload: payload})
	}
	return payloads
}

// signedDelivery signs payload as a delivery and returns its headers and
// body, timestamped now.
func signedDelivery(t *testing.T, id string, payload []byte, secrets ...Secret) (http.Header, []byte) {
	t.Helper()
	body, err := SignBody(payload, secrets[0])
	require.NoError(t, err)
	timestamp := time.Now()
	return deliveryHeaders(id, timestamp, Sign(id, timestamp, body, secrets...)), body
}

func TestVerifyHardPayloads(t *testing.T) {
	t.Parallel()

	generated, err := GenerateSecret()
	require.NoError(t, err)
	secrets := []Secret{generated, mustSecret(t, "raw-secret-ключ-😀")}
	for _, p := range hardPayloads(t) {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			for _, secret := range secrets {
				headers, body := signedDelivery(t, "evt_"+p.name, p.payload, secret)
				require.NoError(t, Verify(secret.Reveal(), headers, body, 0))

				// The receiver's rebuilt body without the member equals the
				// stored payload, byte for byte.
				members, ok := objectMembers(body)
				require.True(t, ok)
				rest, err := canonicalRest(members)
				require.NoError(t, err)
				require.Equal(t, string(p.payload), string(rest))
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()

	const secretText = "raw-secret-0123456789"
	secret := mustSecret(t, secretText)
	now := time.Unix(1_700_000_000, 0)
	signedAt := func(body string, timestamp time.Time) http.Header {
		return deliveryHeaders("evt_1", timestamp, Sign("evt_1", timestamp, []byte(body), secret))
	}
	withMember := func(rest, member string) string {
		return strings.Replace(rest, "{", `{"signature":"sha256=`+member+`",`, 1)
	}
	memberOf := func(rest string) string {
		body, err := SignBody([]byte(rest), secret)
		require.NoError(t, err)
		return strings.TrimSuffix(strings.TrimPrefix(string(body), rest[:len(rest)-1]+`,"signature":"sha256=`), `"}`)
	}

	tests := []struct {
		name      string
		body      string
		headers   http.Header
		tolerance time.Duration
	}{
		{name: "SignedBody", body: mustSignBody(t, `{"a":1}`, secret), headers: nil},
		{name: "NoSignatureMember", body: `{"a":1}`},
		{name: "NotJSON", body: `hello`},
		{name: "JSONArray", body: `[{"signature":"sha256=00"}]`},
		{name: "EmptyBody", body: ``},
		{name: "NestedSignatureIgnored", body: `{"a":{"signature":"not checked"}}`},
		{
			name: "MemberFirstKeysOutOfOrder",
			body: withMember(`{"b":1,"10":"x","2":"y"}`, memberOf(`{"2":"y","10":"x","b":1}`)),
		},
		{
			name: "DuplicateMemberLastWins",
			body: `{"a":1,"signature":"sha256=00","signature":"sha256=` + memberOf(`{"a":1}`) + `"}`,
		},
		{
			name: "WhitespaceInBody",
			body: "{ \"a\" : 1.0 ,\n \"signature\" : \"sha256=" + memberOf(`{"a":1}`) + "\" }\n",
		},
		{name: "OldWithinTolerance", body: `{}`, headers: signedAt(`{}`, now.Add(-14*time.Minute)), tolerance: 15 * time.Minute},
		{name: "NewWithinDefault", body: `{}`, headers: signedAt(`{}`, now.Add(4*time.Minute))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			headers := tt.headers
			if headers == nil {
				headers = signedAt(tt.body, now)
			}
			require.NoError(t, verifyAt(secretText, headers, []byte(tt.body), tt.tolerance, now))
		})
	}
}

func mustSignBody(t *testing.T, payload string, secret Secret) string {
	t.Helper()
	body, err := SignBody([]byte(payload), secret)
	require.NoError(t, err)
	return string(body)
}

func TestVerifyHeaderNamesAnyCase(t *testing.T) {
	t.Parallel()

	secret := mustSecret(t, vectorSecret)
	signature := Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody), secret)
	headers := http.Header{
		"webhook-id":        {vectorID},
		"WEBHOOK-TIMESTAMP": {strconv.Itoa(vectorTimestamp)},
		"Webhook-Signature": {signature},
	}
	now := time.Unix(vectorTimestamp, 0)
	require.NoError(t, verifyAt(vectorSecret, headers, []byte(vectorBody), 0, now))
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()

	const secretText = "raw-secret-0123456789"
	secret := mustSecret(t, secretText)
	now := time.Unix(1_700_000_000, 0)
	body := mustSignBody(t, `{"a":1,"b":"<&>"}`, secret)
	signature := Sign("evt_1", now, []byte(body), secret)
	// resigned returns headers whose signature covers body, as a sender
	// with a faulty body member would send.
	resigned := func(body string) http.Header {
		return deliveryHeaders("evt_1", now, Sign("evt_1", now, []byte(body), secret))
	}
	with := func(name, value string) http.Header {
		headers := deliveryHeaders("evt_1", now, signature)
		headers.Set(name, value)
		return headers
	}
	without := func(names ...string) http.Header {
		headers := deliveryHeaders("evt_1", now, signature)
		for _, name := range names {
			headers.Del(name)
		}
		return headers
	}
	tamperedMember := strings.Replace(body, `sha256=`, `sha256=00`, 1)

	tests := []struct {
		name      string
		secret    string
		headers   http.Header
		body      string
		wantIs    error
		wantError string
	}{
		{name: "NoHeaders", headers: http.Header{}, wantIs: ErrMissingHeaders,
			wantError: "webhook-id, webhook-timestamp, webhook-signature"},
		{name: "MissingID", headers: without("webhook-id"), wantIs: ErrMissingHeaders, wantError: ": webhook-id"},
		{name: "MissingTimestamp", headers: without("webhook-timestamp"), wantIs: ErrMissingHeaders,
			wantError: ": webhook-timestamp"},
		{name: "MissingSignature", headers: without("webhook-signature"), wantIs: ErrMissingHeaders,
			wantError: ": webhook-signature"},
		{name: "BlankSignature", headers: with("webhook-signature", "  "), wantIs: ErrMissingHeaders},
		{name: "TimestampNotInteger", headers: with("webhook-timestamp", "2023-11-14T22:13:20Z"), wantIs: ErrTimestamp,
			wantError: "not an integer number of Unix seconds"},
		{name: "TimestampOld", headers: resignedAt(secret, body, now.Add(-6*time.Minute)), wantIs: ErrTimestamp,
			wantError: "is 6m0s older than the current time, beyond the 5m0s tolerance"},
		{name: "TimestampFuture", headers: resignedAt(secret, body, now.Add(10*time.Minute)), wantIs: ErrTimestamp,
			wantError: "is 10m0s ahead of the current time"},
		{name: "TimestampMaxInt64", headers: with("webhook-timestamp", "9223372036854775807"), wantIs: ErrTimestamp,
			wantError: "ahead of the current time"},
		{name: "TimestampMinInt64", headers: with("webhook-timestamp", "-9223372036854775808"), wantIs: ErrTimestamp,
			wantError: "older than the current time"},
		{name: "TimestampOverflow", headers: with("webhook-timestamp", "9223372036854775808"), wantIs: ErrTimestamp,
			wantError: "not an integer number of Unix seconds"},
		{name: "TimestampReplaced", headers: with("webhook-timestamp", strconv.FormatInt(now.Unix()-1, 10)),
			wantIs: ErrSignature, wantError: "none of the 1 v1 entries"},
		{name: "WrongSecret", secret: "other-secret-0123456789", wantIs: ErrSignature},
		{name: "WrongID", headers: with("webhook-id", "evt_2"), wantIs: ErrSignature},
		{name: "TamperedBody", body: strings.Replace(body, `"a":1`, `"a":2`, 1), wantIs: ErrSignature},
		{name: "TamperedMember", body: tamperedMember, wantIs: ErrSignature},
		{name: "NoV1Entry", headers: with("webhook-signature", "v1a,"+strings.TrimPrefix(signature, "v1,")),
			wantIs: ErrSignature, wantError: "has no v1 entry"},
		{name: "EntryNotBase64", headers: with("webhook-signature", "v1,!!!"), wantIs: ErrSignature},
		{name: "ResignedTamperedMember", headers: resigned(tamperedMember), body: tamperedMember,
			wantIs: ErrSignature, wantError: "the body's signature member does not match"},
		{name: "MemberNotString", headers: resigned(`{"a":1,"signature":5}`), body: `{"a":1,"signature":5}`,
			wantIs: ErrSignature, wantError: "is not a string"},
		{name: "MemberWithoutPrefix", headers: resigned(`{"signature":"sha1=00"}`), body: `{"signature":"sha1=00"}`,
			wantIs: ErrSignature, wantError: `does not start with "sha256="`},
		{name: "MemberNotHex", headers: resigned(`{"signature":"sha256=xyz"}`), body: `{"signature":"sha256=xyz"}`,
			wantIs: ErrSignature, wantError: "followed by hex digits"},
		{name: "InvalidSecret", secret: "short", wantError: "5-byte key, need at least 16 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secretText := cmpOr(tt.secret, secretText)
			headers := tt.headers
			if headers == nil {
				headers = deliveryHeaders("evt_1", now, signature)
			}
			err := verifyAt(secretText, headers, []byte(cmpOr(tt.body, body)), 0, now)
			require.Error(t, err)
			if tt.wantIs != nil {
				require.ErrorIs(t, err, tt.wantIs)
			}
			require.ErrorContains(t, err, tt.wantError)
			require.NotContains(t, err.Error(), secretText)
		})
	}
}

func cmpOr(value, fallback string) string {
	if value != "" {
		return value
	}
	return fallback
}

func resignedAt(secret Secret, body string, timestamp time.Time) http.Header {
	return deliveryHeaders("evt_1", timestamp, Sign("evt_1", timestamp, []byte(body), secret))
}

func TestVerifyUsesClock(t *testing.T) {
	t.Parallel()

	secret := mustSecret(t, vectorSecret)
	headers := deliveryHeaders(vectorID, time.Unix(vectorTimestamp, 0),
		Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody), secret))
	err := Verify(vectorSecret, headers, []byte(vectorBody), time.Hour)
	require.ErrorIs(t, err, ErrTimestamp)
	require.ErrorContains(t, err, "beyond the 1h0m0s tolerance")
}
