package canon

// These tests compare the package with Node.js, the reference for
// JSON.stringify. They skip when no node executable is found.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runNode runs the JavaScript program script with a file holding one input
// line per element of lines as its argument, and returns the lines it prints.
func runNode(t *testing.T, script string, lines []string) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if _, statErr := os.Stat("/usr/bin/node"); statErr != nil {
			t.Skip("node not found in PATH or /usr/bin")
		}
		node = "/usr/bin/node"
	}
	dir := t.TempDir()
	scriptPath := filepath.Join(dir, "check.js")
	inputPath := filepath.Join(dir, "input.txt")
	require.NoError(t, os.WriteFile(scriptPath, []byte(script), 0o600))
	require.NoError(t, os.WriteFile(inputPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, scriptPath, inputPath).Output()
	require.NoError(t, err, "running node: %s", exitStderr(err))
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	require.Len(t, got, len(lines))
	return got
}

func exitStderr(err error) string {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return string(exitErr.Stderr)
	}
	return ""
}

// nodeLines is the JavaScript preamble that reads the input lines and writes
// one output line per input line. Strings travel as base64 of UTF-8.
const nodeLines = `
const fs = require('fs');
const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n');
lines.pop();
const decode = (b) => Buffer.from(b, 'base64').toString('utf8');
const encode = (s) => Buffer.from(s, 'utf8').toString('base64');
process.stdout.write(lines.map(check).join('\n') + '\n');
`

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestNodeNumberToString(t *testing.T) {
	t.Parallel()

	values := numberSamples(rand.New(rand.NewPCG(1, 2)))
	lines := make([]string, len(values))
	for i, f := range values {
		lines[i] = strconv.FormatUint(math.Float64bits(f), 16)
	}
	script := `
const view = new DataView(new ArrayBuffer(8));
function check(hex) {
  view.setBigUint64(0, BigInt('0x' + hex));
  return String(view.getFloat64(0));
}` + nodeLines
	want := runNode(t, script, lines)

	for i, f := range values {
		got, err := AppendNumber(nil, f)
		require.NoError(t, err)
		require.Equal(t, want[i], string(got), "float64 bits %s", lines[i])
	}
}

// numberSamples returns finite float64 values: edges of the plain and
// exponent forms, powers of ten and their neighbours, integers near 2^53 and
// random values.
func numberSamples(rng *rand.Rand) []float64 {
	values := []float64{
		0, math.Copysign(0, -1), 1, -1, 0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3, 100, 123.456,
		math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 0x1p-1022,
		0x1p-1022 - 0x1p-1074, 1e21, 1e-7, 1e-6, 9.999999999999999e20, 1.5e300,
		math.Pi, math.E, 4.35, 0.000001, 123456789012345680000, 5e-324,
	}
	for e := -325; e <= 308; e++ {
		p := math.Pow(10, float64(e))
		values = append(values, p, math.Nextafter(p, 0), math.Nextafter(p, math.Inf(1)), -p, 1.5*p, 9.87654321*p)
	}
	for d := int64(-20); d <= 20; d++ {
		values = append(values, float64(1<<53+d), -float64(1<<53+d), float64(uint64(1<<63)+uint64(d+20)*4096))
	}
	for range 5000 {
		values = append(values, math.Float64frombits(rng.Uint64()))
	}
	for range 3000 {
		mantissa := float64(rng.Int64N(1_000_000_000_000))
		values = append(values, mantissa*math.Pow(10, float64(rng.IntN(60)-40)))
		values = append(values, float64(rng.Float32()))
	}
	finite := values[:0]
	for _, f := range values {
		if !math.IsInf(f, 0) && !math.IsNaN(f) {
			finite = append(finite, f)
		}
	}
	return finite
}

func TestNodeAppendString(t *testing.T) {
	t.Parallel()

	rng := rand.New(rand.NewPCG(3, 4))
	var inputs []string
	for range 2000 {
		inputs = append(inputs, randomText(rng, 12))
	}
	inputs = append(inputs, "", "\u2028\u2029", "<script>&amp;</script>", "\x00\x1f\x7f")
	lines := make([]string, len(inputs))
	for i, s := range inputs {
		lines[i] = b64([]byte(s))
	}
	want := runNode(t, `function check(b) { return encode(JSON.stringify(decode(b))); }`+nodeLines, lines)

	for i, s := range inputs {
		require.Equal(t, want[i], b64(AppendString(nil, s)), "string %q", s)
	}
}

func TestNodeObjectOrder(t *testing.T) {
	t.Parallel()

	rng := rand.New(rand.NewPCG(5, 6))
	var objects []Object
	var lines []string
	for range 1000 {
		var o Object
		var adds []byte
		adds = append(adds, '[')
		for i := range rng.IntN(40) {
			key := randomKey(rng)
			value := strconv.AppendInt(nil, int64(i), 10)
			o.Add(key, value)
			if i > 0 {
				adds = append(adds, ',')
			}
			adds = append(adds, '[')
			adds = AppendString(adds, key)
			adds = append(adds, ',')
			adds = append(adds, value...)
			adds = append(adds, ']')
		}
		adds = append(adds, ']')
		objects = append(objects, o)
		lines = append(lines, b64(adds))
	}
	script := `
function check(b) {
  const o = {};
  // defineProperty, unlike o[k] = v, makes "__proto__" an own property, as
  // JSON.parse does.
  for (const [k, v] of JSON.parse(decode(b))) {
    Object.defineProperty(o, k, {value: v, enumerable: true, writable: true, configurable: true});
  }
  return encode(JSON.stringify(o));
}` + nodeLines
	want := runNode(t, script, lines)

	for i := range objects {
		require.Equal(t, want[i], b64(objects[i].AppendTo(nil)), "adds %s", lines[i])
	}
}

func TestNodeCanonicalize(t *testing.T) {
	t.Parallel()

	rng := rand.New(rand.NewPCG(7, 8))
	inputs := []string{
		`{"b":1,"10":2,"2":3,"a":4,"01":5,"-1":6,"4294967294":7,"4294967295":8}`,
		`{"a":1,"b":2,"a":3,"\u0061":4,"1":5,"1":6}`,
		`{"x":{"9":{"b":0,"1":[{"z":1,"0":2}]},"x":null},"x":{"3":"last","c":true}}`,
		`"\ud800 \udfff \ud83d\ude00 \uD83D\uDE00 \ud800\ud800\udc00 \u2028 \u003c\/"`,
		`[1.0,1e2,-0,1.5E+3,0.5,-0.0e10,100e-2,1E0,0.000001,1e-7,1e21,123e18,5e-324,1.7976931348623157e308]`,
		` { "a" : [ 1 , { } , [ ] , "" ] , "" : 0 } `,
	}
	for range 1500 {
		inputs = append(inputs, randomJSON(rng, 4))
	}
	lines := make([]string, len(inputs))
	for i, s := range inputs {
		lines[i] = b64([]byte(s))
	}
	want := runNode(t, `function check(b) { return encode(JSON.stringify(JSON.parse(decode(b)))); }`+nodeLines, lines)

	for i, s := range inputs {
		got, err := Canonicalize(nil, []byte(s))
		require.NoError(t, err, "input %s", s)
		require.Equal(t, want[i], b64(got), "input %s\nwant %s\ngot  %s", s, decodeB64(t, want[i]), got)
	}
}

// TestNodeCanonicalizeKeepsDigits checks that output with numbers kept as
// strings is still a fixed point of JSON.stringify(JSON.parse(x)).
func TestNodeCanonicalizeKeepsDigits(t *testing.T) {
	t.Parallel()

	inputs := []string{
		`[12345678901234567890,0.1000000000000000000001,1e400,-1e-400,9007199254740993]`,
		`{"big":123456789012345678901234567890,"10":1e999,"1":0.30000000000000001}`,
	}
	var lines []string
	var outputs [][]byte
	for _, s := range inputs {
		got, err := Canonicalize(nil, []byte(s))
		require.NoError(t, err)
		require.Contains(t, string(got), `"`)
		outputs = append(outputs, got)
		lines = append(lines, b64(got))
	}
	want := runNode(t, `function check(b) { return encode(JSON.stringify(JSON.parse(decode(b)))); }`+nodeLines, lines)

	for i, got := range outputs {
		require.Equal(t, want[i], b64(got), "input %s", inputs[i])
	}
}

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return string(b)
}

// textRunes are the characters random strings are built from, chosen for
// the escaping rules they exercise.
var textRunes = []rune{
	'a', 'Z', '0', ' ', '"', '\\', '/', '<', '>', '&', '\'', 0, 1, '\b', '\t', '\n', 0x0b,
	'\f', '\r', 0x1f, 0x7f, 0x80, 0xe9, 0x2028, 0x2029, 0xfeff, 0xfffd, 0xffff,
	0x1f600, 0x10ffff, 0x65e5,
}

func randomText(rng *rand.Rand, maxLen int) string {
	var b strings.Builder
	for range rng.IntN(maxLen + 1) {
		b.WriteRune(textRunes[rng.IntN(len(textRunes))])
	}
	return b.String()
}

// randomKey returns object keys that are often array indexes, near misses
// of array indexes, or repeats.
func randomKey(rng *rand.Rand) string {
	keys := []string{
		"0", "1", "2", "9", "10", "100", "01", "-1", "1.5", "1e3", "4294967294", "4294967295",
		"4294967296", "a", "b", "id", "", " 1", "__proto__", "constructor", "length",
	}
	if rng.IntN(4) == 0 {
		return strconv.Itoa(rng.IntN(1000))
	}
	return keys[rng.IntN(len(keys))]
}

// randomJSON returns JSON text with random whitespace, escapes and number
// spellings. Every number denotes its float64 value exactly, so Node's output
// is the expected output.
func randomJSON(rng *rand.Rand, depth int) string {
	var b strings.Builder
	writeRandomValue(&b, rng, depth)
	return b.String()
}

func writeRandomValue(b *strings.Builder, rng *rand.Rand, depth int) {
	writeSpace(b, rng)
	kind := rng.IntN(7)
	if depth == 0 && kind >= 5 {
		kind = rng.IntN(5)
	}
	switch kind {
	case 0:
		b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
	case 1, 2:
		writeRandomString(b, rng, randomText(rng, 8))
	case 3, 4:
		b.WriteString(randomNumber(rng))
	case 5:
		b.WriteByte('[')
		for i := range rng.IntN(5) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeRandomValue(b, rng, depth-1)
		}
		writeSpace(b, rng)
		b.WriteByte(']')
	case 6:
		b.WriteByte('{')
		for i := range rng.IntN(8) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeSpace(b, rng)
			writeRandomString(b, rng, randomKey(rng))
			writeSpace(b, rng)
			b.WriteByte(':')
			writeRandomValue(b, rng, depth-1)
		}
		writeSpace(b, rng)
		b.WriteByte('}')
	}
	writeSpace(b, rng)
}

func writeSpace(b *strings.Builder, rng *rand.Rand) {
	if rng.IntN(3) == 0 {
		b.WriteString([]string{" ", "\t", "\n", "\r\n", "  "}[rng.IntN(5)])
	}
}

// writeRandomString writes s as a JSON string, spelling each character
// literally or with one of the escapes JSON allows.
func writeRandomString(b *strings.Builder, rng *rand.Rand, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r < 0x20 || rng.IntN(4) == 0:
			writeUnicodeEscape(b, rng, r)
		case r == '/' && rng.IntN(2) == 0:
			b.WriteString(`\/`)
		default:
			b.WriteRune(r)
		}
	}
	if rng.IntN(10) == 0 {
		// A lone surrogate, which only an escape can spell.
		fmt.Fprintf(b, `\u%04x`, 0xd800+rng.IntN(0x800))
	}
	b.WriteByte('"')
}

func writeUnicodeEscape(b *strings.Builder, rng *rand.Rand, r rune) {
	format := `\u%04x`
	if rng.IntN(2) == 0 {
		format = `\u%04X`
	}
	if r > 0xffff {
		r -= 0x10000
		fmt.Fprintf(b, format, 0xd800+(r>>10))
		fmt.Fprintf(b, format, 0xdc00+(r&0x3ff))
		return
	}
	fmt.Fprintf(b, format, r)
}

// randomNumber spells a random float64 in one of many equivalent decimal
// forms: moved decimal point, exponent, leading and trailing zeros.
func randomNumber(rng *rand.Rand) string {
	var f float64
	switch rng.IntN(3) {
	case 0:
		f = float64(rng.Int64N(2_000_000) - 1_000_000)
	case 1:
		f = math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			f = 0.5
		}
	default:
		f = float64(rng.Int64N(100000)) * math.Pow(10, float64(rng.IntN(40)-20))
	}

	var d shortest
	d.set(f)
	if d.n == 0 {
		return []string{"0", "-0", "0.000", "0e10", "-0.0E-3"}[rng.IntN(5)]
	}

	digits := string(d.digits[:d.n]) + strings.Repeat("0", rng.IntN(3))
	// Put the decimal point after shift digits, padding with zeros, and
	// make up for it in the exponent.
	shift := rng.IntN(len(digits)+4) - 2
	exp := d.point - shift
	var mantissa string
	switch {
	case shift <= 0:
		mantissa = "0." + strings.Repeat("0", -shift) + digits
	case shift >= len(digits):
		mantissa = digits + strings.Repeat("0", shift-len(digits))
	default:
		mantissa = digits[:shift] + "." + digits[shift:]
	}

	sign := ""
	if d.neg {
		sign = "-"
	}
	if exp == 0 && rng.IntN(2) == 0 {
		return sign + mantissa
	}
	marker := []string{"e", "E", "e+", "E+"}[rng.IntN(4)]
	if exp < 0 {
		marker = marker[:1]
	}
	return sign + mantissa + marker + strconv.Itoa(exp)
}
