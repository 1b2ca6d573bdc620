package canon

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestAppendString(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "Empty", in: "", want: `""`},
		{name: "Plain", in: "hello", want: `"hello"`},
		{name: "QuoteAndBackslash", in: `a"b\c`, want: `"a\"b\\c"`},
		{name: "ShortEscapes", in: "\b\f\n\r\t", want: `"\b\f\n\r\t"`},
		{name: "OtherControls", in: "\x00\x01\x1f\x0b", want: `"\u0000\u0001\u001f\u000b"`},
		{name: "DeleteLiteral", in: "\x7f", want: "\"\x7f\""},
		{name: "HTMLNotEscaped", in: "<a href='x'>&amp;</a>", want: `"<a href='x'>&amp;</a>"`},
		{name: "SlashNotEscaped", in: "a/b", want: `"a/b"`},
		{name: "LineSeparators", in: "\u2028\u2029", want: "\"\u2028\u2029\""},
		{name: "Emoji", in: "😀 é ü 日本", want: `"😀 é ü 日本"`},
		{name: "InvalidByte", in: "a\xffb", want: "\"a\uFFFDb\""},
		{name: "TruncatedSequence", in: "\xe2\x82", want: "\"\uFFFD\uFFFD\""},
		{name: "EncodedSurrogate", in: "\xed\xa0\x80", want: "\"\uFFFD\uFFFD\uFFFD\""},
		{name: "Noncharacter", in: "\uFFFF\uFFFE", want: "\"\uFFFF\uFFFE\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := AppendString([]byte("x"), tt.in)
			require.Equal(t, "x"+tt.want, string(got))

			got = AppendStringBytes([]byte("x"), []byte(tt.in))
			require.Equal(t, "x"+tt.want, string(got))
		})
	}
}

func TestAppendNumber(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		in   float64
		want string
	}{
		{name: "Zero", in: 0, want: "0"},
		{name: "NegativeZero", in: math.Copysign(0, -1), want: "0"},
		{name: "One", in: 1, want: "1"},
		{name: "Negative", in: -42, want: "-42"},
		{name: "Fraction", in: 0.1, want: "0.1"},
		{name: "SumRounding", in: math.Nextafter(0.3, 1), want: "0.30000000000000004"},
		{name: "MaxSafeInteger", in: 9007199254740991, want: "9007199254740991"},
		{name: "TwoTo53", in: 9007199254740992, want: "9007199254740992"},
		{name: "LargeInteger", in: 123456789012345680000, want: "123456789012345680000"},
		{name: "BelowExponentForm", in: 999999999999999900000, want: "999999999999999900000"},
		{name: "ExponentFormAt1e21", in: 1e21, want: "1e+21"},
		{name: "ExponentFormMantissa", in: 1.5e21, want: "1.5e+21"},
		{name: "SmallPlain", in: 1e-6, want: "0.000001"},
		{name: "SmallPlainDigits", in: 1.23e-6, want: "0.00000123"},
		{name: "SmallExponent", in: 1e-7, want: "1e-7"},
		{name: "SmallExponentMantissa", in: 1.5e-7, want: "1.5e-7"},
		{name: "MinSubnormal", in: 5e-324, want: "5e-324"},
		{name: "MaxFloat", in: math.MaxFloat64, want: "1.7976931348623157e+308"},
		{name: "NegativeExponent", in: -2.5e-10, want: "-2.5e-10"},
		{name: "Float32Value", in: float64(float32(0.1)), want: "0.10000000149011612"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := AppendNumber([]byte("x"), tt.in)
			require.NoError(t, err)
			require.Equal(t, "x"+tt.want, string(got))
		})
	}
}

func TestAppendNumberNonFinite(t *testing.T) {
	t.Parallel()

	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		got, err := AppendNumber([]byte("x"), f)
		require.ErrorIs(t, err, errNonFinite)
		require.Equal(t, "x", string(got))
	}
}

func TestArrayIndex(t *testing.T) {
	t.Parallel()

	tests := []struct {
		key       string
		wantIndex uint32
		wantOK    bool
	}{
		{key: "0", wantIndex: 0, wantOK: true},
		{key: "10", wantIndex: 10, wantOK: true},
		{key: "4294967294", wantIndex: 4294967294, wantOK: true},
		{key: "4294967295", wantOK: false},
		{key: "9999999999", wantOK: false},
		{key: "12345678901", wantOK: false},
		{key: "01", wantOK: false},
		{key: "00", wantOK: false},
		{key: "-1", wantOK: false},
		{key: "+1", wantOK: false},
		{key: "1.0", wantOK: false},
		{key: "1e3", wantOK: false},
		{key: " 1", wantOK: false},
		{key: "", wantOK: false},
		{key: "a", wantOK: false},
	}
	for _, tt := range tests {
		index, ok := arrayIndex(tt.key)
		require.Equal(t, tt.wantOK, ok, "key %q", tt.key)
		require.Equal(t, tt.wantIndex, index, "key %q", tt.key)
	}
}

func TestObject(t *testing.T) {
	t.Parallel()

	type add struct{ key, raw string }
	tests := []struct {
		name    string
		adds    []add
		want    string
		wantLen int
	}{
		{name: "Empty", want: `{}`},
		{
			name:    "InsertionOrder",
			adds:    []add{{"b", "1"}, {"a", "2"}, {"c", `"x"`}},
			want:    `{"b":1,"a":2,"c":"x"}`,
			wantLen: 3,
		},
		{
			name:    "IndexKeysFirstAscending",
			adds:    []add{{"b", "1"}, {"10", "2"}, {"a", "3"}, {"2", "4"}, {"0", "5"}},
			want:    `{"0":5,"2":4,"10":2,"b":1,"a":3}`,
			wantLen: 5,
		},
		{
			name:    "NonCanonicalNumbersStayInOrder",
			adds:    []add{{"z", "1"}, {"01", "2"}, {"-1", "3"}, {"1.5", "4"}, {"4294967295", "5"}, {"4294967294", "6"}},
			want:    `{"4294967294":6,"z":1,"01":2,"-1":3,"1.5":4,"4294967295":5}`,
			wantLen: 6,
		},
		{
			name:    "DuplicateKeepsFirstPositionLastValue",
			adds:    []add{{"a", "1"}, {"b", "2"}, {"a", "3"}},
			want:    `{"a":3,"b":2}`,
			wantLen: 2,
		},
		{
			name:    "DuplicateIndexKey",
			adds:    []add{{"5", "1"}, {"x", "2"}, {"5", "3"}},
			want:    `{"5":3,"x":2}`,
			wantLen: 2,
		},
		{
			name:    "KeysEscaped",
			adds:    []add{{"a\"b", "null"}, {"\u2028<>", "true"}},
			want:    "{\"a\\\"b\":null,\"\u2028<>\":true}",
			wantLen: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var o Object
			for _, a := range tt.adds {
				o.Add(a.key, []byte(a.raw))
			}
			require.Equal(t, tt.wantLen, o.Len())
			require.Equal(t, tt.want, string(o.AppendTo(nil)))
		})
	}
}

func TestObjectManyKeys(t *testing.T) {
	t.Parallel()

	// More members than positionsThreshold, so duplicates are found through
	// the positions map, including keys added before the map existed.
	var o Object
	var want strings.Builder
	want.WriteString(`{"3":"i3","7":"i7"`)
	for i := range 40 {
		key := fmt.Sprintf("k%02d", i)
		o.Add(key, []byte(`0`))
		want.WriteString(`,"` + key + `":1`)
	}
	want.WriteString("}")
	o.Add("7", []byte(`"i7"`))
	for i := range 40 {
		o.Add(fmt.Sprintf("k%02d", i), []byte(`1`))
	}
	o.Add("3", []byte(`"i3"`))
	require.Equal(t, 42, o.Len())
	require.Equal(t, want.String(), string(o.AppendTo(nil)))

	o.Reset()
	require.Equal(t, 0, o.Len())
	o.Add("b", []byte("1"))
	o.Add("1", []byte("2"))
	o.Add("b", []byte("3"))
	require.Equal(t, `{"1":2,"b":3}`, string(o.AppendTo(nil)))
}

// TestObjectAddAllocations is not parallel because AllocsPerRun counts the
// allocations of every running goroutine.
func TestObjectAddAllocations(t *testing.T) {
	var o Object
	raw := []byte(`"v"`)
	keys := []string{"id", "name", "email", "10", "2", "created_at", "tags", "0"}
	buf := make([]byte, 0, 256)
	for _, k := range keys {
		o.Add(k, raw)
	}
	allocs := testing.AllocsPerRun(100, func() {
		o.Reset()
		for _, k := range keys {
			o.Add(k, raw)
		}
		buf = o.AppendTo(buf[:0])
	})
	require.Zero(t, allocs)
}

func TestCanonicalize(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "Scalars", in: ` [ true , false , null , "s" , 1 ] `, want: `[true,false,null,"s",1]`},
		{name: "TopLevelString", in: `"a"`, want: `"a"`},
		{name: "TopLevelNumber", in: " -0 ", want: `0`},
		{name: "EmptyContainers", in: `{ "a" : [ ] , "b" : { } }`, want: `{"a":[],"b":{}}`},
		{name: "IntegerKeysFirst", in: `{"b":1,"10":2,"2":3,"a":4,"01":5}`, want: `{"2":3,"10":2,"b":1,"a":4,"01":5}`},
		{name: "IntegerKeysAlreadyOrdered", in: `{"0":1,"1":2,"x":3}`, want: `{"0":1,"1":2,"x":3}`},
		{name: "MaxIndexKey", in: `{"a":1,"4294967295":2,"4294967294":3}`, want: `{"4294967294":3,"a":1,"4294967295":2}`},
		{name: "EscapedIndexKey", in: `{"a":1,"\u0031":2}`, want: `{"1":2,"a":1}`},
		{name: "DuplicateKeys", in: `{"a":1,"b":2,"a":3}`, want: `{"a":3,"b":2}`},
		{name: "DuplicateKeysEscaped", in: `{"a":1,"\u0061":2}`, want: `{"a":2}`},
		{name: "DuplicateIndexKeys", in: `{"x":0,"1":1,"0":2,"1":3}`, want: `{"0":2,"1":3,"x":0}`},
		{name: "DuplicateKeyNestedValue", in: `{"a":{"z":1,"3":2},"a":{"y":[1,2]}}`, want: `{"a":{"y":[1,2]}}`},
		{name: "NestedReorder", in: `{"b":{"9":1,"1":2},"0":[{"k":1,"5":0}]}`, want: `{"0":[{"5":0,"k":1}],"b":{"1":2,"9":1}}`},
		{name: "StringEscapes", in: `"\"\\\/\b\f\n\r\t"`, want: `"\"\\/\b\f\n\r\t"`},
		{name: "UnicodeEscapes", in: `"\u0041\u00e9\u2028\u003c\u0000\u001F\u007f"`, want: "\"A\u00e9\u2028<\\u0000\\u001f\x7f\""},
		{name: "SurrogatePair", in: `"\uD83D\uDE00"`, want: `"😀"`},
		{name: "LoneHighSurrogate", in: `"\uD800x"`, want: `"\ud800x"`},
		{name: "LoneLowSurrogate", in: `"\uDC00"`, want: `"\udc00"`},
		{name: "HighThenPair", in: `"\ud800\ud83d\ude00"`, want: `"\ud800😀"`},
		{name: "HighThenNonSurrogate", in: `"\ud800\u0041"`, want: `"\ud800A"`},
		{name: "RawUnicode", in: "\"日本\u2029\"", want: "\"日本\u2029\""},
		{name: "InvalidUTF8", in: "\"a\xffb\"", want: "\"a\uFFFDb\""},
		{name: "NumberForms", in: `[1.0,1e2,-0,1.5E+3,0.5,-0.0e10,100e-2,1E0,0.000001,1e-7,1e21,123e18]`, want: `[1,100,0,1500,0.5,0,1,1,0.000001,1e-7,1e+21,123000000000000000000]`},
		{name: "NumberExact", in: `[9007199254740993,12345678901234567890,0.1000000000000000000001,1e400,-1e400,1e-400]`, want: `["9007199254740993","12345678901234567890","0.1000000000000000000001","1e400","-1e400","1e-400"]`},
		{name: "NumberTrailingZeros", in: `[1.10000000000000000000000000000,10000000000000000000000000000e-28]`, want: `[1.1,1]`},
		{name: "NumberMaxSafe", in: `[9007199254740991,9007199254740992,-9007199254740993]`, want: `[9007199254740991,9007199254740992,"-9007199254740993"]`},
		{name: "NumberZeroHugeExponent", in: `[0e999999999999999999999,0.0E-400]`, want: `[0,0]`},
		{name: "NumberHugeExponent", in: `[1e999999999999999999999,1e-999999999999999999999]`, want: `["1e999999999999999999999","1e-999999999999999999999"]`},
		{name: "NumberFloatDigits", in: `[0.1,0.30000000000000004,5e-324,1.7976931348623157e308]`, want: `[0.1,0.30000000000000004,5e-324,1.7976931348623157e+308]`},
		{name: "NumberRoundedFloat", in: `[0.30000000000000001,2.5e-324]`, want: `["0.30000000000000001","2.5e-324"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Canonicalize([]byte("x"), []byte(tt.in))
			require.NoError(t, err)
			require.Equal(t, "x"+tt.want, string(got))
		})
	}
}

func TestCanonicalizeLargeObjectDuplicates(t *testing.T) {
	t.Parallel()

	var in, want strings.Builder
	in.WriteString(`{"z":0`)
	want.WriteString(`{"7":"seven","z":"last"`)
	for i := range 30 {
		key := `"k` + string(rune('a'+i)) + `"`
		in.WriteString("," + key + ":0")
		want.WriteString("," + key + ":1")
	}
	for i := range 30 {
		in.WriteString(`,"k` + string(rune('a'+i)) + `":1`)
	}
	in.WriteString(`,"7":"seven","z":"last"}`)
	want.WriteString("}")

	got, err := Canonicalize(nil, []byte(in.String()))
	require.NoError(t, err)
	require.Equal(t, want.String(), string(got))
}

func TestCanonicalizeDepth(t *testing.T) {
	t.Parallel()

	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	got, err := Canonicalize(nil, []byte(ok))
	require.NoError(t, err)
	require.Equal(t, ok, string(got))

	tooDeep := strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1)
	_, err = Canonicalize(nil, []byte(tooDeep))
	require.ErrorContains(t, err, "nesting deeper than 1000 levels")

	hostile := strings.Repeat("[", 10_000_000)
	_, err = Canonicalize(nil, []byte(hostile))
	require.ErrorContains(t, err, "nesting deeper than 1000 levels")
}

func TestCanonicalizeInvalid(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "Empty", in: "", wantErr: "unexpected end of input"},
		{name: "Spaces", in: "  ", wantErr: "unexpected end of input"},
		{name: "TrailingData", in: "1 2", wantErr: "unexpected data after the top-level value"},
		{name: "TrailingComma", in: "[1,]", wantErr: "invalid character ']'"},
		{name: "TrailingCommaObject", in: `{"a":1,}`, wantErr: "expected a string as object key"},
		{name: "MissingColon", in: `{"a" 1}`, wantErr: "expected ':' after an object key"},
		{name: "UnquotedKey", in: `{a:1}`, wantErr: "expected a string as object key"},
		{name: "UnclosedArray", in: `[1`, wantErr: "expected ',' or ']' after an array element"},
		{name: "UnclosedObject", in: `{"a":1`, wantErr: "expected ',' or '}' after an object member"},
		{name: "UnterminatedString", in: `"abc`, wantErr: "unterminated string"},
		{name: "UnterminatedEscape", in: `"abc\`, wantErr: "unterminated string"},
		{name: "ControlInString", in: "\"a\nb\"", wantErr: "control character in string"},
		{name: "BadEscape", in: `"\x41"`, wantErr: `invalid escape \x in string`},
		{name: "ShortUnicodeEscape", in: `"\u12"`, wantErr: `invalid \u escape in string`},
		{name: "LeadingZero", in: "01", wantErr: "unexpected data after the top-level value"},
		{name: "LeadingPlus", in: "+1", wantErr: "invalid character '+'"},
		{name: "BareMinus", in: "-", wantErr: "invalid number"},
		{name: "DotWithoutDigits", in: "1.", wantErr: "invalid number"},
		{name: "LeadingDot", in: ".5", wantErr: "invalid character '.'"},
		{name: "ExponentWithoutDigits", in: "1e+", wantErr: "invalid number"},
		{name: "NaN", in: "NaN", wantErr: "invalid character 'N'"},
		{name: "Infinity", in: "-Infinity", wantErr: "invalid number"},
		{name: "BadLiteral", in: "tru", wantErr: "invalid literal, expected true"},
		{name: "SingleQuotes", in: "'a'", wantErr: `invalid character '\''`},
		{name: "ByteOrderMark", in: "\uFEFF1", wantErr: "invalid byte 0xef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Canonicalize([]byte("x"), []byte(tt.in))
			require.ErrorContains(t, err, tt.wantErr)
			require.Equal(t, "x", string(got))
		})
	}
}

func BenchmarkCanonicalize(b *testing.B) {
	src := []byte(`{"id":123,"name":"Ada <Lovelace>","tags":["a","b"],"score":1.5,` +
		`"meta":{"10":true,"2":null,"nested":{"x":[1,2,3]}}}`)
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		dst, err = Canonicalize(dst[:0], src)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkObject(b *testing.B) {
	var o Object
	raw := []byte(`"value"`)
	keys := []string{"id", "event", "model", "table", "instanceId", "changes", "timestamp", "lsn"}
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		o.Reset()
		for _, k := range keys {
			o.Add(k, raw)
		}
		dst = o.AppendTo(dst[:0])
	}
}

// FuzzCanonicalize checks that Canonicalize never panics, writes valid JSON
// and is idempotent, and that it accepts exactly what encoding/json accepts.
func FuzzCanonicalize(f *testing.F) {
	for _, seed := range []string{
		`{"b":1,"10":2,"2":3,"a":4}`, `[1.0,1e400,-0,"\ud800"]`, `{"a":1,"a":{"1":0,"0":1}}`,
		`"\u2028<>&"`, `12345678901234567890`, `[[[[]]]]`, `{"":""}`, "\"\xff\"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		out, err := Canonicalize(nil, src)
		if err != nil {
			if utf8.Valid(src) && json.Valid(src) && !strings.Contains(err.Error(), "nesting deeper") {
				t.Fatalf("rejected valid JSON %q: %v", src, err)
			}
			return
		}
		if utf8.Valid(src) && !json.Valid(src) {
			t.Fatalf("accepted invalid JSON %q", src)
		}
		require.True(t, json.Valid(out), "output %q", out)
		again, err := Canonicalize(nil, out)
		require.NoError(t, err)
		require.Equal(t, string(out), string(again))
	})
}
