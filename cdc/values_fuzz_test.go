package cdc

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// roundTripTypes are the scalar types whose JSON can be read back and
// compared with the Postgres text it came from.
var roundTripTypes = []uint32{
	pgtype.Int8OID, pgtype.BoolOID, pgtype.ByteaOID, pgtype.TextOID, pgtype.Float8OID, pgtype.TimestamptzOID,
}

// integerText is the form of an integer that Postgres writes.
var integerText = regexp.MustCompile(`^-?[0-9]+$`)

// FuzzScalarRoundTrip converts one value of a scalar type and reads the
// JSON back: integers, booleans, bytea, text, floats and timestamptz must
// keep their value. A rejected value must leave dst as it was.
func FuzzScalarRoundTrip(f *testing.F) {
	for i, seed := range []string{
		"-9223372036854775808", "t", `\x00ff10`, "Ada \"Lovelace\" <ada@example.com> \u2028", "1.5e-7",
		"2021-09-20 15:16:25.123456+05:30", "9007199254740993", "f", `\xDEADbeef`, "\xff\xfe", "-0",
		"1999-12-31 23:59:59.999999-08", "+1", "1e400", "0001-01-01 00:00:00+00", "NaN",
	} {
		f.Add(uint8(i), []byte(seed))
	}
	// Offsets that move the instant across the ends of 1 to 9999 AD.
	for _, seed := range []string{"9999-12-31 20:00:00-07", "0001-01-01 00:30:00+01", "9999-12-31 23:59:59.999999-00:00:01"} {
		f.Add(uint8(5), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, which uint8, text []byte) {
		typ := builtinTypes[roundTripTypes[int(which)%len(roundTripTypes)]]
		prefix := []byte(`{"v":`)
		out, err := typ.AppendJSON(bytes.Clone(prefix), text)
		if err != nil {
			if !bytes.Equal(out, prefix) {
				t.Fatalf("rejected %s value %q changed dst to %q", typ.Name, text, out)
			}
			return
		}
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("%s value %q overwrote dst: %q", typ.Name, text, out)
		}
		value := out[len(prefix):]
		if !json.Valid(value) {
			t.Fatalf("%s value %q became invalid JSON %q", typ.Name, text, value)
		}
		checkRoundTrip(t, typ.Kind, string(text), value)
	})
}

// checkRoundTrip compares the JSON of an accepted value with its text.
func checkRoundTrip(t *testing.T, kind Kind, text string, value []byte) {
	t.Helper()
	switch kind {
	case KindInt:
		want, err := strconv.ParseInt(text, 10, 64)
		if err != nil || !integerText.MatchString(text) {
			t.Fatalf("integer %q was accepted", text)
		}
		got, err := strconv.ParseInt(string(bytes.Trim(value, `"`)), 10, 64)
		if err != nil || got != want || (value[0] == '"') != (want > maxSafeInteger || want < -maxSafeInteger) {
			t.Fatalf("integer %q became %s", text, value)
		}
	case KindBool:
		if want := map[string]string{"t": "true", "f": "false"}[text]; string(value) != want {
			t.Fatalf("boolean %q became %s", text, value)
		}
	case KindBytea:
		var encoded string
		mustUnmarshal(t, value, &encoded)
		got, err := base64.StdEncoding.DecodeString(encoded)
		want, hexErr := hex.DecodeString(text[2:])
		if err != nil || hexErr != nil || !bytes.Equal(got, want) {
			t.Fatalf("bytea %q became %s", text, value)
		}
	case KindText:
		var got string
		mustUnmarshal(t, value, &got)
		if utf8.ValidString(text) && got != text {
			t.Fatalf("text %q became %s", text, value)
		}
	case KindFloat:
		checkFloat(t, text, value)
	case KindTimestamptz:
		checkTimestamptz(t, text, value)
	}
}

func checkFloat(t *testing.T, text string, value []byte) {
	t.Helper()
	want, _ := strconv.ParseFloat(text, 64)
	if math.IsNaN(want) || math.IsInf(want, 0) {
		if string(value) != strconv.Quote(text) {
			t.Fatalf("float %q became %s", text, value)
		}
		return
	}
	got, err := strconv.ParseFloat(string(value), 64)
	if err != nil || got != want {
		t.Fatalf("float %q became %s", text, value)
	}
}

// checkTimestamptz compares the instant of a timestamptz with years 1 to
// 9999 AD, which Go's time package parses too.
func checkTimestamptz(t *testing.T, text string, value []byte) {
	t.Helper()
	var got string
	mustUnmarshal(t, value, &got)
	if got == "infinity" || got == "-infinity" {
		if got != text {
			t.Fatalf("timestamptz %q became %s", text, value)
		}
		return
	}
	want, ok := timestamptzInstant(text)
	if !ok {
		return // BC, expanded years and other forms Go cannot parse
	}
	if year := want.UTC().Year(); year > 9999 {
		// An offset west of UTC can carry 9999-12-31 into 10000 AD, which
		// must come out in the expanded form.
		expanded := fmt.Sprintf("+%06d", year) + want.UTC().Format("-01-02T15:04:05.000000Z")
		if got != expanded {
			t.Fatalf("timestamptz %q became %s, want %s", text, value, expanded)
		}
		return
	}
	parsed, err := time.Parse(time.RFC3339Nano, got)
	if err != nil || !parsed.Equal(want) || parsed.Location() != time.UTC {
		t.Fatalf("timestamptz %q became %s, want %s", text, value, want.UTC().Format(time.RFC3339Nano))
	}
}

// tzOffset is a UTC offset as Postgres writes it.
var tzOffset = regexp.MustCompile(`([+-])([0-9]{2})(?::([0-9]{2})(?::([0-9]{2}))?)?$`)

// timestamptzInstant reads a timestamptz of 1 to 9999 AD with time.Parse
// for the local part only: time.Parse drops an offset of seconds alone,
// such as -00:00:01.
func timestamptzInstant(text string) (time.Time, bool) {
	m := tzOffset.FindStringSubmatchIndex(text)
	if m == nil {
		return time.Time{}, false
	}
	local, err := time.Parse("2006-01-02 15:04:05.999999", text[:m[0]])
	if err != nil {
		return time.Time{}, false
	}
	part := func(i int) int {
		if m[2*i] < 0 {
			return 0
		}
		n, _ := strconv.Atoi(text[m[2*i]:m[2*i+1]])
		return n
	}
	if part(3) > 59 || part(4) > 59 {
		return time.Time{}, false
	}
	offset := time.Duration(part(2))*time.Hour + time.Duration(part(3))*time.Minute + time.Duration(part(4))*time.Second
	if text[m[2]] == '-' {
		offset = -offset
	}
	return local.Add(-offset), true
}

func mustUnmarshal(t *testing.T, value []byte, out any) {
	t.Helper()
	if err := json.Unmarshal(value, out); err != nil {
		t.Fatalf("decoding %s: %v", value, err)
	}
}
