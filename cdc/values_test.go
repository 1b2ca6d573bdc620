package cdc

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"
)

// builtin returns the built-in type oid for a test.
func builtin(t *testing.T, oid uint32) *Type {
	t.Helper()
	typ, ok := builtinTypes[oid]
	require.True(t, ok, "type %d is not built in", oid)
	return typ
}

func TestAppendJSON(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		oid  uint32
		in   string
		want string
	}{
		{name: "BoolTrue", oid: pgtype.BoolOID, in: "t", want: `true`},
		{name: "BoolFalse", oid: pgtype.BoolOID, in: "f", want: `false`},

		{name: "Int2", oid: pgtype.Int2OID, in: "-32768", want: `-32768`},
		{name: "Int4", oid: pgtype.Int4OID, in: "2147483647", want: `2147483647`},
		{name: "Int4Zero", oid: pgtype.Int4OID, in: "0", want: `0`},
		{name: "Int8MaxSafe", oid: pgtype.Int8OID, in: "9007199254740991", want: `9007199254740991`},
		{name: "Int8AboveSafe", oid: pgtype.Int8OID, in: "9007199254740992", want: `"9007199254740992"`},
		{name: "Int8MinSafe", oid: pgtype.Int8OID, in: "-9007199254740991", want: `-9007199254740991`},
		{name: "Int8BelowSafe", oid: pgtype.Int8OID, in: "-9007199254740992", want: `"-9007199254740992"`},
		{name: "Int8Max", oid: pgtype.Int8OID, in: "9223372036854775807", want: `"9223372036854775807"`},
		{name: "Int8Min", oid: pgtype.Int8OID, in: "-9223372036854775808", want: `"-9223372036854775808"`},

		{name: "Numeric", oid: pgtype.NumericOID, in: "12345678901234567890.000100", want: `"12345678901234567890.000100"`},
		{name: "NumericSmall", oid: pgtype.NumericOID, in: "0.1", want: `"0.1"`},
		{name: "NumericNaN", oid: pgtype.NumericOID, in: "NaN", want: `"NaN"`},
		{name: "NumericInfinity", oid: pgtype.NumericOID, in: "Infinity", want: `"Infinity"`},
		{name: "NumericNegativeInfinity", oid: pgtype.NumericOID, in: "-Infinity", want: `"-Infinity"`},

		{name: "Float8", oid: pgtype.Float8OID, in: "1.5", want: `1.5`},
		{name: "Float8NegativeZero", oid: pgtype.Float8OID, in: "-0", want: `0`},
		{name: "Float8ExponentForm", oid: pgtype.Float8OID, in: "1e+21", want: `1e+21`},
		{name: "Float8BelowExponentForm", oid: pgtype.Float8OID, in: "1e+20", want: `100000000000000000000`},
		{name: "Float8SmallPlain", oid: pgtype.Float8OID, in: "1e-06", want: `0.000001`},
		{name: "Float8SmallExponent", oid: pgtype.Float8OID, in: "1e-07", want: `1e-7`},
		{name: "Float8MinSubnormal", oid: pgtype.Float8OID, in: "5e-324", want: `5e-324`},
		{name: "Float8Max", oid: pgtype.Float8OID, in: "1.7976931348623157e+308", want: `1.7976931348623157e+308`},
		{name: "Float8Digits", oid: pgtype.Float8OID, in: "0.30000000000000004", want: `0.30000000000000004`},
		{name: "Float8NaN", oid: pgtype.Float8OID, in: "NaN", want: `"NaN"`},
		{name: "Float8Infinity", oid: pgtype.Float8OID, in: "Infinity", want: `"Infinity"`},
		{name: "Float8NegativeInfinity", oid: pgtype.Float8OID, in: "-Infinity", want: `"-Infinity"`},
		{name: "Float4Decimal", oid: pgtype.Float4OID, in: "0.1", want: `0.1`},
		{name: "Float4Max", oid: pgtype.Float4OID, in: "3.4028235e+38", want: `3.4028235e+38`},

		{name: "Text", oid: pgtype.TextOID, in: "a \"b\" \\ <c> & \u2028", want: "\"a \\\"b\\\" \\\\ <c> & \u2028\""},
		{name: "TextControl", oid: pgtype.TextOID, in: "line\nnext\ttab\x01", want: `"line\nnext\ttab\u0001"`},
		{name: "TextEmpty", oid: pgtype.TextOID, in: "", want: `""`},
		{name: "Varchar", oid: pgtype.VarcharOID, in: "héllo 😀", want: `"héllo 😀"`},
		{name: "BPCharKeepsPadding", oid: pgtype.BPCharOID, in: "ab   ", want: `"ab   "`},
		{name: "Name", oid: pgtype.NameOID, in: "pg_class", want: `"pg_class"`},
		{name: "UUID", oid: pgtype.UUIDOID, in: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", want: `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{name: "Date", oid: pgtype.DateOID, in: "2021-09-20", want: `"2021-09-20"`},
		{name: "DateBC", oid: pgtype.DateOID, in: "0044-03-15 BC", want: `"0044-03-15 BC"`},
		{name: "DateInfinity", oid: pgtype.DateOID, in: "infinity", want: `"infinity"`},
		{name: "Time", oid: pgtype.TimeOID, in: "15:16:25.123456", want: `"15:16:25.123456"`},
		{name: "Timetz", oid: pgtype.TimetzOID, in: "15:16:25+05:30", want: `"15:16:25+05:30"`},
		{name: "Timestamp", oid: pgtype.TimestampOID, in: "2021-09-20 15:16:25.5", want: `"2021-09-20 15:16:25.5"`},
		{name: "Interval", oid: pgtype.IntervalOID, in: "1 year 2 mons 3 days 04:05:06.7", want: `"1 year 2 mons 3 days 04:05:06.7"`},

		{name: "JSONObject", oid: pgtype.JSONOID, in: `{"b": 1, "a": [1.0, true, null], "10": "x"}`, want: `{"10":"x","b":1,"a":[1,true,null]}`},
		{name: "JSONBigNumbers", oid: pgtype.JSONOID, in: `[12345678901234567890, 9007199254740993, 1e400, 0.1]`, want: `["12345678901234567890","9007199254740993","1e400",0.1]`},
		{name: "JSONDuplicateKeys", oid: pgtype.JSONOID, in: `{"a": 1, "a": 2}`, want: `{"a":2}`},
		{name: "JSONBScalar", oid: pgtype.JSONBOID, in: `"<\u2028>"`, want: "\"<\u2028>\""},
		{name: "JSONBNumber", oid: pgtype.JSONBOID, in: `1.500`, want: `1.5`},

		{name: "ByteaEmpty", oid: pgtype.ByteaOID, in: `\x`, want: `""`},
		{name: "ByteaBinary", oid: pgtype.ByteaOID, in: `\x00ff10fe`, want: `"AP8Q/g=="`},
		{name: "ByteaUppercaseHex", oid: pgtype.ByteaOID, in: `\xDEADBEEF`, want: `"3q2+7w=="`},
		{name: "ByteaText", oid: pgtype.ByteaOID, in: `\x68656c6c6f`, want: `"aGVsbG8="`},

		{name: "Timestamptz", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25.123456+00", want: `"2021-09-20T15:16:25.123456Z"`},
		{name: "TimestamptzNoFraction", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25+00", want: `"2021-09-20T15:16:25.000000Z"`},
		{name: "TimestamptzShortFraction", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25.1+00", want: `"2021-09-20T15:16:25.100000Z"`},
		{name: "TimestamptzOffset", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25.5+05:30", want: `"2021-09-20T09:46:25.500000Z"`},
		{name: "TimestamptzOffsetPreviousDay", oid: pgtype.TimestamptzOID, in: "2021-03-01 02:00:00+05:30", want: `"2021-02-28T20:30:00.000000Z"`},
		{name: "TimestamptzOffsetPreviousYear", oid: pgtype.TimestamptzOID, in: "2000-01-01 00:00:00+01", want: `"1999-12-31T23:00:00.000000Z"`},
		{name: "TimestamptzNegativeOffsetNextDay", oid: pgtype.TimestamptzOID, in: "2020-02-28 23:30:00-02", want: `"2020-02-29T01:30:00.000000Z"`},
		{name: "TimestamptzOffsetSeconds", oid: pgtype.TimestamptzOID, in: "1900-01-01 00:00:00+00:09:21", want: `"1899-12-31T23:50:39.000000Z"`},
		{name: "TimestamptzBC", oid: pgtype.TimestamptzOID, in: "0044-03-15 12:00:00+00 BC", want: `"-000043-03-15T12:00:00.000000Z"`},
		{name: "Timestamptz1BC", oid: pgtype.TimestamptzOID, in: "0001-12-31 23:59:59.999999+00 BC", want: `"0000-12-31T23:59:59.999999Z"`},
		{name: "Timestamptz2BC", oid: pgtype.TimestamptzOID, in: "0002-06-01 00:00:00+00 BC", want: `"-000001-06-01T00:00:00.000000Z"`},
		{name: "TimestamptzLeapDay1BC", oid: pgtype.TimestamptzOID, in: "0001-02-29 00:00:00+00 BC", want: `"0000-02-29T00:00:00.000000Z"`},
		{name: "TimestamptzOffsetInto1BC", oid: pgtype.TimestamptzOID, in: "0001-01-01 00:30:00+01", want: `"0000-12-31T23:30:00.000000Z"`},
		{name: "TimestamptzOffsetInto2BC", oid: pgtype.TimestamptzOID, in: "0001-01-01 00:30:00+01 BC", want: `"-000001-12-31T23:30:00.000000Z"`},
		{name: "TimestamptzOldest", oid: pgtype.TimestamptzOID, in: "4714-11-24 00:00:00+00 BC", want: `"-004713-11-24T00:00:00.000000Z"`},
		{name: "TimestamptzYear9999", oid: pgtype.TimestamptzOID, in: "9999-12-31 23:59:59.999999+00", want: `"9999-12-31T23:59:59.999999Z"`},
		{name: "TimestamptzOffsetInto10000", oid: pgtype.TimestamptzOID, in: "9999-12-31 23:30:00-01", want: `"+010000-01-01T00:30:00.000000Z"`},
		{name: "TimestamptzYear10000", oid: pgtype.TimestamptzOID, in: "10000-01-01 00:00:00+00", want: `"+010000-01-01T00:00:00.000000Z"`},
		{name: "TimestamptzNewest", oid: pgtype.TimestamptzOID, in: "294276-12-31 23:59:59.999999+00", want: `"+294276-12-31T23:59:59.999999Z"`},
		{name: "TimestamptzInfinity", oid: pgtype.TimestamptzOID, in: "infinity", want: `"infinity"`},
		{name: "TimestamptzNegativeInfinity", oid: pgtype.TimestamptzOID, in: "-infinity", want: `"-infinity"`},

		{name: "ArrayInt", oid: pgtype.Int4ArrayOID, in: "{1,2,3}", want: `[1,2,3]`},
		{name: "ArrayEmpty", oid: pgtype.Int4ArrayOID, in: "{}", want: `[]`},
		{name: "ArrayNull", oid: pgtype.Int4ArrayOID, in: "{1,NULL,3}", want: `[1,null,3]`},
		{name: "ArrayInt8Big", oid: pgtype.Int8ArrayOID, in: "{1,9007199254740992}", want: `[1,"9007199254740992"]`},
		{name: "ArrayNested", oid: pgtype.Int4ArrayOID, in: "{{1,2},{3,4}}", want: `[[1,2],[3,4]]`},
		{name: "ArrayThreeDims", oid: pgtype.Int4ArrayOID, in: "{{{1},{2}},{{3},{NULL}}}", want: `[[[1],[2]],[[3],[null]]]`},
		{name: "ArrayBounds", oid: pgtype.Int4ArrayOID, in: "[0:2]={7,8,9}", want: `[7,8,9]`},
		{name: "ArrayBoundsNested", oid: pgtype.Int4ArrayOID, in: "[-1:0][1:2]={{1,2},{3,4}}", want: `[[1,2],[3,4]]`},
		{name: "ArrayTextQuoted", oid: pgtype.TextArrayOID, in: `{plain,"with space","a,b","{}",""}`, want: `["plain","with space","a,b","{}",""]`},
		{name: "ArrayTextEscapes", oid: pgtype.TextArrayOID, in: `{"say \"hi\"","back\\slash","\\"}`, want: `["say \"hi\"","back\\slash","\\"]`},
		{name: "ArrayTextNullWord", oid: pgtype.TextArrayOID, in: `{"NULL",NULL,"null",nuLL}`, want: `["NULL",null,"null",null]`},
		{name: "ArrayTextUnquotedEscape", oid: pgtype.TextArrayOID, in: `{a\,b,N\ULL}`, want: `["a,b","NULL"]`},
		{name: "ArrayTextUnicode", oid: pgtype.TextArrayOID, in: "{héllo,\"😀 \u2028\"}", want: "[\"héllo\",\"😀 \u2028\"]"},
		{name: "ArrayTextWhitespace", oid: pgtype.TextArrayOID, in: "{ a , b }", want: `["a","b"]`},
		{name: "ArrayTextNested", oid: pgtype.TextArrayOID, in: `{{"a\"",NULL},{"}",c}}`, want: `[["a\"",null],["}","c"]]`},
		{name: "ArrayBool", oid: pgtype.BoolArrayOID, in: "{t,f,NULL}", want: `[true,false,null]`},
		{name: "ArrayFloat", oid: pgtype.Float8ArrayOID, in: "{-0,NaN,Infinity,1e+21}", want: `[0,"NaN","Infinity",1e+21]`},
		{name: "ArrayNumeric", oid: pgtype.NumericArrayOID, in: "{1.50,NaN}", want: `["1.50","NaN"]`},
		{name: "ArrayJSONB", oid: pgtype.JSONBArrayOID, in: `{"{\"b\": 1, \"1\": 12345678901234567890}","[]"}`, want: `[{"1":"12345678901234567890","b":1},[]]`},
		{name: "ArrayBytea", oid: pgtype.ByteaArrayOID, in: `{"\\x00ff","\\x"}`, want: `["AP8=",""]`},
		{name: "ArrayTimestamptz", oid: pgtype.TimestamptzArrayOID, in: `{"2021-09-20 15:16:25+00",infinity}`, want: `["2021-09-20T15:16:25.000000Z","infinity"]`},
		{name: "ArrayDate", oid: pgtype.DateArrayOID, in: `{2021-09-20,"0044-03-15 BC"}`, want: `["2021-09-20","0044-03-15 BC"]`},
		{name: "ArrayUUID", oid: pgtype.UUIDArrayOID, in: `{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}`, want: `["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]`},
		{name: "ArrayBoxDelimiter", oid: pgtype.BoxArrayOID, in: `{(1,1),(0,0);(3,3),(2,2)}`, want: `["(1,1),(0,0)","(3,3),(2,2)"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := builtin(t, tt.oid).AppendJSON([]byte("x"), []byte(tt.in))
			require.NoError(t, err)
			require.Equal(t, "x"+tt.want, string(got))
		})
	}
}

func TestAppendJSONInvalid(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		oid     uint32
		in      string
		wantErr string
	}{
		{name: "Bool", oid: pgtype.BoolOID, in: "true", wantErr: `converting bool value "true" to JSON: invalid boolean, expected t or f`},
		{name: "IntEmpty", oid: pgtype.Int4OID, in: "", wantErr: `converting int4 value "" to JSON: invalid integer`},
		{name: "IntLetters", oid: pgtype.Int4OID, in: "12a", wantErr: "invalid integer"},
		{name: "IntPlus", oid: pgtype.Int4OID, in: "+1", wantErr: "invalid integer"},
		{name: "IntMinus", oid: pgtype.Int4OID, in: "-", wantErr: "invalid integer"},
		{name: "Int8Overflow", oid: pgtype.Int8OID, in: "9223372036854775808", wantErr: "invalid integer"},
		{name: "Int8Underflow", oid: pgtype.Int8OID, in: "-9223372036854775809", wantErr: "invalid integer"},
		{name: "Int8TooLong", oid: pgtype.Int8OID, in: "99999999999999999999", wantErr: "invalid integer"},
		{name: "FloatEmpty", oid: pgtype.Float8OID, in: "", wantErr: "invalid floating-point number"},
		{name: "FloatHex", oid: pgtype.Float8OID, in: "0x1p-2", wantErr: "invalid floating-point number"},
		{name: "FloatInf", oid: pgtype.Float8OID, in: "inf", wantErr: "invalid floating-point number"},
		{name: "FloatOutOfRange", oid: pgtype.Float8OID, in: "1e999", wantErr: "value out of range"},
		{name: "FloatSyntax", oid: pgtype.Float8OID, in: "1.2.3", wantErr: "invalid syntax"},
		{name: "JSON", oid: pgtype.JSONOID, in: `{"a":}`, wantErr: `converting json value "{\"a\":}" to JSON: invalid JSON at offset 5`},
		{name: "ByteaEscapeFormat", oid: pgtype.ByteaOID, in: `abc\000`, wantErr: `invalid bytea, expected hex format starting with \x`},
		{name: "ByteaOdd", oid: pgtype.ByteaOID, in: `\x0`, wantErr: "invalid bytea, odd number of hex digits"},
		{name: "ByteaBadHex", oid: pgtype.ByteaOID, in: `\x0g`, wantErr: `invalid bytea, bad hex digit pair "0g"`},
		{name: "TimestamptzNoZone", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25", wantErr: "invalid timestamptz"},
		{name: "TimestamptzRFC3339", oid: pgtype.TimestamptzOID, in: "2021-09-20T15:16:25Z", wantErr: "invalid timestamptz"},
		{name: "TimestamptzBadMonth", oid: pgtype.TimestamptzOID, in: "2021-13-20 15:16:25+00", wantErr: "invalid timestamptz"},
		{name: "TimestamptzBadDay", oid: pgtype.TimestamptzOID, in: "2021-02-29 15:16:25+00", wantErr: "invalid timestamptz"},
		{name: "TimestamptzBadHour", oid: pgtype.TimestamptzOID, in: "2021-09-20 24:00:00+00", wantErr: "invalid timestamptz"},
		{name: "TimestamptzLongFraction", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25.1234567+00", wantErr: "invalid timestamptz"},
		{name: "TimestamptzEmptyFraction", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25.+00", wantErr: "invalid timestamptz"},
		{name: "TimestamptzYearZero", oid: pgtype.TimestamptzOID, in: "0000-01-01 00:00:00+00", wantErr: "invalid timestamptz"},
		{name: "TimestamptzHugeOffset", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25+24", wantErr: "invalid timestamptz"},
		{name: "TimestamptzTrailing", oid: pgtype.TimestamptzOID, in: "2021-09-20 15:16:25+00 AD", wantErr: "invalid timestamptz"},
		{name: "ArrayNoBrace", oid: pgtype.Int4ArrayOID, in: "1,2", wantErr: "invalid array, expected {"},
		{name: "ArrayUnclosed", oid: pgtype.Int4ArrayOID, in: "{1,2", wantErr: `invalid array, expected ',' or } after an element`},
		{name: "ArrayTrailing", oid: pgtype.Int4ArrayOID, in: "{1}x", wantErr: "invalid array, unexpected text after the closing }"},
		{name: "ArrayEmptyElement", oid: pgtype.Int4ArrayOID, in: "{1,,2}", wantErr: "invalid array, empty unquoted element"},
		{name: "ArrayUnterminatedQuote", oid: pgtype.TextArrayOID, in: `{"abc}`, wantErr: "invalid array, unterminated quoted element"},
		{name: "ArrayQuoteInside", oid: pgtype.TextArrayOID, in: `{ab"c"}`, wantErr: `invalid array, unexpected '"' inside an unquoted element`},
		{name: "ArrayBadBounds", oid: pgtype.Int4ArrayOID, in: "[0:x]={1}", wantErr: "invalid array dimensions"},
		{name: "ArrayMissingEquals", oid: pgtype.Int4ArrayOID, in: "[0:1]", wantErr: "invalid array dimensions, missing ="},
		{name: "ArrayTooDeep", oid: pgtype.Int4ArrayOID, in: "{{{{{{{1}}}}}}}", wantErr: "invalid array, more than 6 dimensions"},
		{
			name:    "ArrayBadElement",
			oid:     pgtype.Int4ArrayOID,
			in:      "{1,x}",
			wantErr: `converting int4[] value "{1,x}" to JSON: converting int4 value "x" to JSON: invalid integer`,
		},
		{
			name:    "LongValueTruncated",
			oid:     pgtype.BoolOID,
			in:      strings.Repeat("é", 40),
			wantErr: `converting bool value "` + strings.Repeat("é", 32) + `..." to JSON`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := builtin(t, tt.oid).AppendJSON([]byte("x"), []byte(tt.in))
			require.ErrorContains(t, err, tt.wantErr)
			require.Equal(t, "x", string(got))
		})
	}
}

// TestNodeDateParseTimestamptz checks that JavaScript's Date.parse reads each
// timestamptz value back as the same moment, to the millisecond. It skips
// when no node executable is found.
func TestNodeDateParseTimestamptz(t *testing.T) {
	t.Parallel()

	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found in PATH")
	}
	tests := []struct{ in, want string }{
		{"2021-09-20 15:16:25.123456+00", "2021-09-20T15:16:25.123Z"},
		{"0001-12-31 23:59:59.999999+00 BC", "0000-12-31T23:59:59.999Z"},
		{"0002-06-01 00:00:00+00 BC", "-000001-06-01T00:00:00.000Z"},
		{"0044-03-15 12:00:00+00 BC", "-000043-03-15T12:00:00.000Z"},
		{"4714-11-24 00:00:00+00 BC", "-004713-11-24T00:00:00.000Z"},
		{"9999-12-31 23:59:59.999999+00", "9999-12-31T23:59:59.999Z"},
		{"10000-01-01 00:00:00+00", "+010000-01-01T00:00:00.000Z"},
		{"275760-09-13 00:00:00+00", "+275760-09-13T00:00:00.000Z"},
		// Later than +275760-09-13T00:00:00Z, the end of JavaScript's Date range.
		{"294276-12-31 23:59:59.999999+00", "NaN"},
	}
	values := make([]json.RawMessage, len(tests))
	for i, tt := range tests {
		values[i], err = builtin(t, pgtype.TimestamptzOID).AppendJSON(nil, []byte(tt.in))
		require.NoError(t, err, tt.in)
	}
	input, err := json.Marshal(values)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, "-e", dateParseScript)
	cmd.Stdin, cmd.Stderr = bytes.NewReader(input), &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "running node: %s", stderr.String())

	var got []string
	require.NoError(t, json.Unmarshal(out, &got), "node output %s", out)
	require.Len(t, got, len(tests))
	for i, tt := range tests {
		require.Equal(t, tt.want, got[i], "Date.parse(%s) for timestamptz %q", values[i], tt.in)
	}
}

// dateParseScript reads a JSON array of date strings from standard input and
// writes the toISOString form of each Date.parse result, or "NaN".
const dateParseScript = `
const values = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(values.map((v) => {
	const ms = Date.parse(v);
	return Number.isNaN(ms) ? "NaN" : new Date(ms).toISOString();
})));
`

func TestAppendJSONDomainAndEnum(t *testing.T) {
	t.Parallel()

	// Resolved domains and enums carry the kind of their base type, or
	// KindText for enums, so they convert like these types.
	mood := &Type{OID: 90001, Name: "mood", Kind: KindText}
	moods := &Type{OID: 90002, Name: "mood[]", Kind: KindArray, Elem: mood, delim: ','}
	email := &Type{OID: 90003, Name: "email", Kind: KindText}

	got, err := moods.AppendJSON(nil, []byte(`{happy,NULL,"very sad"}`))
	require.NoError(t, err)
	require.Equal(t, `["happy",null,"very sad"]`, string(got))

	got, err = email.AppendJSON(nil, []byte("a@example.com"))
	require.NoError(t, err)
	require.Equal(t, `"a@example.com"`, string(got))
}

// TestAppendJSONAllocations leaves out json and jsonb, which
// canon.Canonicalize converts with a sync.Pool that the race detector
// empties at random, so BenchmarkAppendJSON covers them. Array elements with
// backslash escapes allocate a buffer for the unescaped text.
func TestAppendJSONAllocations(t *testing.T) {
	// Not parallel: AllocsPerRun counts the allocations of every goroutine.
	values := []struct {
		oid  uint32
		text string
	}{
		{pgtype.Int8OID, "9007199254740993"},
		{pgtype.Float8OID, "1.5e-7"},
		{pgtype.TextOID, strings.Repeat("long text value ", 8)},
		{pgtype.ByteaOID, `\x` + strings.Repeat("0123456789abcdef", 16)},
		{pgtype.TimestamptzOID, "2021-09-20 15:16:25.123456+00"},
		{pgtype.Int4ArrayOID, "{1,2,NULL,4}"},
		{pgtype.TextArrayOID, `{"quoted value",plain}`},
	}
	dst := make([]byte, 0, 1024)
	for _, v := range values {
		typ, text := builtin(t, v.oid), []byte(v.text)
		allocs := testing.AllocsPerRun(50, func() {
			var err error
			dst, err = typ.AppendJSON(dst[:0], text)
			require.NoError(t, err)
		})
		require.Zero(t, allocs, "%s value %s", typ.Name, v.text)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	row := []struct {
		typ  *Type
		text []byte
	}{
		{builtinTypes[pgtype.Int8OID], []byte("1234567")},
		{builtinTypes[pgtype.TextOID], []byte("Ada Lovelace <ada@example.com>")},
		{builtinTypes[pgtype.TimestamptzOID], []byte("2021-09-20 15:16:25.123456+00")},
		{builtinTypes[pgtype.TextArrayOID], []byte(`{hiking,photography,"rock climbing"}`)},
		{builtinTypes[pgtype.JSONBOID], []byte(`{"theme": "dark", "langs": ["en", "fr"]}`)},
	}
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		dst = dst[:0]
		for _, v := range row {
			var err error
			if dst, err = v.typ.AppendJSON(dst, v.text); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// FuzzAppendJSON checks that no input panics and that every accepted value
// becomes valid JSON.
func FuzzAppendJSON(f *testing.F) {
	oids := []uint32{
		pgtype.TextArrayOID, pgtype.Int8ArrayOID, pgtype.TimestamptzOID, pgtype.Float8OID,
		pgtype.ByteaOID, pgtype.JSONBArrayOID, pgtype.BoxArrayOID,
	}
	for i, seed := range []string{
		`{"a \"b\"",NULL,{c,d}}`, `[0:1]={1,2}`, "0044-03-15 12:00:00+05:30 BC", "1e+21",
		`\x00ff`, `{"{\"a\": 1}"}`, `{(1,1),(0,0);(2,2),(1,1)}`,
	} {
		f.Add(uint8(i), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, which uint8, text []byte) {
		typ := builtinTypes[oids[int(which)%len(oids)]]
		out, err := typ.AppendJSON(nil, text)
		if err == nil && !json.Valid(out) {
			t.Fatalf("%s value %q became invalid JSON %q", typ.Name, text, out)
		}
	})
}
