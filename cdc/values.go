package cdc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/civicbase/civicbase/canon"
)

// The values handled here are in the text format that pgoutput sends. The
// replication session sets DateStyle=ISO, IntervalStyle=postgres,
// TimeZone=UTC, extra_float_digits=1 and bytea_output=hex, and the parsers
// below accept only those forms (timestamptz also accepts other UTC offsets).

// maxSafeInteger is 2^53-1, JavaScript's Number.MAX_SAFE_INTEGER. JavaScript
// numbers represent every integer up to it exactly.
const maxSafeInteger = 1<<53 - 1

// AppendJSON appends the canonical JSON of one non-NULL value of type t, given
// in Postgres text format. The error names the type and the value, cut to 64
// bytes.
func (t *Type) AppendJSON(dst []byte, text []byte) ([]byte, error) {
	out, err := t.appendJSON(dst, text)
	if err != nil {
		return dst, fmt.Errorf("converting %s value %q to JSON: %w", t.Name, truncate(text, 64), err)
	}
	return out, nil
}

func (t *Type) appendJSON(dst, text []byte) ([]byte, error) {
	switch t.Kind {
	case KindBool:
		return appendBool(dst, text)
	case KindInt:
		return appendInt(dst, text)
	case KindFloat:
		return appendFloat(dst, text)
	case KindJSON:
		return canon.Canonicalize(dst, text)
	case KindBytea:
		return appendBytea(dst, text)
	case KindTimestamptz:
		return appendTimestamptz(dst, text)
	case KindArray:
		delim := t.delim
		if delim == 0 {
			delim = ','
		}
		return appendArray(dst, text, t.Elem, delim)
	}
	return canon.AppendStringBytes(dst, text), nil
}

// truncate returns at most n bytes of text, cut at a UTF-8 character
// boundary, with "..." appended when it cut anything.
func truncate(text []byte, n int) string {
	if len(text) <= n {
		return string(text)
	}
	for n > 0 && !utf8.RuneStart(text[n]) {
		n--
	}
	return string(text[:n]) + "..."
}

func appendBool(dst, text []byte) ([]byte, error) {
	switch string(text) {
	case "t":
		return append(dst, "true"...), nil
	case "f":
		return append(dst, "false"...), nil
	}
	return dst, errors.New("invalid boolean, expected t or f")
}

// appendInt writes an integer as a JSON number, or as a string when a
// JavaScript number cannot represent it exactly.
func appendInt(dst, text []byte) ([]byte, error) {
	v, ok := parseInt64(text)
	if !ok {
		return dst, errors.New("invalid integer")
	}
	if -maxSafeInteger <= v && v <= maxSafeInteger {
		return strconv.AppendInt(dst, v, 10), nil
	}
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, '"'), nil
}

// parseInt64 parses an optional minus sign and decimal digits into an int64,
// without the allocation of strconv.ParseInt's string argument.
func parseInt64(text []byte) (int64, bool) {
	neg := len(text) > 0 && text[0] == '-'
	if neg {
		text = text[1:]
	}
	if len(text) == 0 || len(text) > 19 {
		return 0, false
	}
	var magnitude uint64
	for _, c := range text {
		if c < '0' || c > '9' {
			return 0, false
		}
		magnitude = magnitude*10 + uint64(c-'0')
	}
	// 19 digits cannot overflow uint64, so only the int64 range is left.
	switch {
	case neg && magnitude <= 1<<63:
		return int64(-magnitude), true
	case !neg && magnitude < 1<<63:
		return int64(magnitude), true
	}
	return 0, false
}

// appendFloat writes float4 and float8 values. A float4 is read as the
// float64 nearest to its decimal text, so 0.1 stays 0.1 and does not become
// 0.10000000149011612.
func appendFloat(dst, text []byte) ([]byte, error) {
	switch string(text) {
	case "NaN", "Infinity", "-Infinity":
		return canon.AppendString(dst, string(text)), nil
	}
	if !isDecimalFloat(text) {
		return dst, errors.New("invalid floating-point number")
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return dst, fmt.Errorf("parsing floating-point number: %w", err)
	}
	return canon.AppendNumber(dst, f)
}

// isDecimalFloat reports whether text has only the characters of the decimal
// forms Postgres writes, which excludes the hexadecimal forms, underscores
// and "inf" that strconv.ParseFloat also accepts.
func isDecimalFloat(text []byte) bool {
	if len(text) == 0 {
		return false
	}
	for _, c := range text {
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			return false
		}
	}
	return true
}

// byteaChunk is the number of bytes decoded at a time, a multiple of 3 so
// that only the last chunk's base64 has padding.
const byteaChunk = 48

// appendBytea converts the hex form \x0102... to standard base64, in chunks
// on the stack so that only dst grows.
func appendBytea(dst, text []byte) ([]byte, error) {
	if len(text) < 2 || text[0] != '\\' || text[1] != 'x' {
		return dst, errors.New(`invalid bytea, expected hex format starting with \x`)
	}
	hex := text[2:]
	if len(hex)%2 != 0 {
		return dst, errors.New("invalid bytea, odd number of hex digits")
	}
	dst = append(dst, '"')
	var chunk [byteaChunk]byte
	for len(hex) > 0 {
		n := min(len(hex)/2, byteaChunk)
		for i := range n {
			hi, ok1 := unhex(hex[2*i])
			lo, ok2 := unhex(hex[2*i+1])
			if !ok1 || !ok2 {
				return dst, fmt.Errorf("invalid bytea, bad hex digit pair %q", hex[2*i:2*i+2])
			}
			chunk[i] = hi<<4 | lo
		}
		dst = base64.StdEncoding.AppendEncode(dst, chunk[:n])
		hex = hex[2*n:]
	}
	return append(dst, '"'), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendTimestamptz converts the ISO form 2021-09-20 15:16:25.123456+00 to
// RFC 3339 in UTC with exactly six fractional digits. Postgres writes years
// before 1 AD with a BC suffix (1 BC, 2 BC), and they become the
// astronomical years 0, -1 and so on. RFC 3339 has no form for years
// outside 0000-9999, and JavaScript's Date.parse returns NaN for -0001 and
// 10000. Such years are written in ECMAScript's expanded form instead, a sign
// and six digits, so 2 BC is -000001 and 10000 AD is +010000. infinity and
// -infinity stay strings of those words.
//
// NOTE: Date.parse (Node.js 20) still returns NaN after
// +275760-09-13T00:00:00.000Z, the end of JavaScript's Date range, although
// Postgres allows timestamptz up to 294276 AD.
func appendTimestamptz(dst, text []byte) ([]byte, error) {
	switch string(text) {
	case "infinity", "-infinity":
		return canon.AppendString(dst, string(text)), nil
	}
	ts, err := parseTimestamptz(text)
	if err != nil {
		return dst, err
	}
	return appendRFC3339Micro(dst, ts), nil
}

// timestamp is a moment in UTC on the proleptic Gregorian calendar, with an
// astronomical year.
type timestamp struct {
	year                                   int
	month, day, hour, minute, second, usec int
}

var errInvalidTimestamptz = errors.New("invalid timestamptz, expected YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]][ BC]")

// parseTimestamptz parses the ISO output of timestamptz and converts it to
// UTC.
func parseTimestamptz(text []byte) (timestamp, error) {
	var ts timestamp
	bc := false
	if n := len(text); n > 3 && string(text[n-3:]) == " BC" {
		bc, text = true, text[:n-3]
	}
	s := scanner{text: text, ok: true}
	ts.year = s.digits(4, 7)
	ts.month = s.sep('-').digits(2, 2)
	ts.day = s.sep('-').digits(2, 2)
	ts.hour = s.sep(' ').digits(2, 2)
	ts.minute = s.sep(':').digits(2, 2)
	ts.second = s.sep(':').digits(2, 2)
	if s.peek() == '.' {
		ts.usec = s.sep('.').fraction()
	}
	offset := s.offset()
	if !s.ok || len(s.text) != 0 || ts.year == 0 {
		return ts, errInvalidTimestamptz
	}
	if bc {
		ts.year = 1 - ts.year
	}
	if !ts.valid() {
		return ts, errInvalidTimestamptz
	}
	ts.addSeconds(-offset)
	return ts, nil
}

// valid reports whether the fields name a real date and time.
func (ts timestamp) valid() bool {
	return ts.month >= 1 && ts.month <= 12 && ts.day >= 1 &&
		ts.day <= daysIn(ts.year, ts.month) && ts.hour <= 23 && ts.minute <= 59 && ts.second <= 59
}

// addSeconds moves ts by delta seconds, at most a day either way.
func (ts *timestamp) addSeconds(delta int) {
	seconds := ts.hour*3600 + ts.minute*60 + ts.second + delta
	switch {
	case seconds < 0:
		seconds += 86400
		ts.day--
		if ts.day == 0 {
			ts.month--
			if ts.month == 0 {
				ts.year, ts.month = ts.year-1, 12
			}
			ts.day = daysIn(ts.year, ts.month)
		}
	case seconds >= 86400:
		seconds -= 86400
		ts.day++
		if ts.day > daysIn(ts.year, ts.month) {
			ts.day, ts.month = 1, ts.month+1
			if ts.month == 13 {
				ts.year, ts.month = ts.year+1, 1
			}
		}
	}
	ts.hour, ts.minute, ts.second = seconds/3600, seconds/60%60, seconds%60
}

// daysIn returns the number of days in a month of an astronomical year on
// the proleptic Gregorian calendar, which Postgres uses for all dates.
func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func appendRFC3339Micro(dst []byte, ts timestamp) []byte {
	dst = append(dst, '"')
	switch {
	case ts.year < 0:
		dst = append(dst, '-')
		dst = appendPadded(dst, -ts.year, 6)
	case ts.year > 9999:
		dst = append(dst, '+')
		dst = appendPadded(dst, ts.year, 6)
	default:
		dst = appendPadded(dst, ts.year, 4)
	}
	dst = append(dst, '-')
	dst = appendPadded(dst, ts.month, 2)
	dst = append(dst, '-')
	dst = appendPadded(dst, ts.day, 2)
	dst = append(dst, 'T')
	dst = appendPadded(dst, ts.hour, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, ts.minute, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, ts.second, 2)
	dst = append(dst, '.')
	dst = appendPadded(dst, ts.usec, 6)
	return append(dst, 'Z', '"')
}

// appendPadded appends the non-negative v with leading zeros to width digits.
func appendPadded(dst []byte, v, width int) []byte {
	var buf [20]byte
	digits := strconv.AppendInt(buf[:0], int64(v), 10)
	for range width - len(digits) {
		dst = append(dst, '0')
	}
	return append(dst, digits...)
}

// scanner reads fixed-format fields from text. After the first mismatch ok
// is false and every method returns zero, so a parse checks ok once at the
// end.
type scanner struct {
	text []byte
	ok   bool
}

func (s *scanner) peek() byte {
	if len(s.text) == 0 {
		return 0
	}
	return s.text[0]
}

// sep consumes the byte c.
func (s *scanner) sep(c byte) *scanner {
	if s.peek() != c {
		s.ok = false
	}
	if len(s.text) > 0 {
		s.text = s.text[1:]
	}
	return s
}

// digits consumes minDigits to maxDigits decimal digits and returns their
// value.
func (s *scanner) digits(minDigits, maxDigits int) int {
	if !s.ok {
		return 0
	}
	v, n := 0, 0
	for n < len(s.text) && n < maxDigits && '0' <= s.text[n] && s.text[n] <= '9' {
		v = v*10 + int(s.text[n]-'0')
		n++
	}
	if n < minDigits {
		s.ok = false
	}
	s.text = s.text[n:]
	return v
}

// fraction consumes 1 to 6 fractional digits and returns microseconds.
func (s *scanner) fraction() int {
	before := len(s.text)
	v := s.digits(1, 6)
	for range 6 - (before - len(s.text)) {
		v *= 10
	}
	return v
}

// offset consumes a UTC offset ±HH[:MM[:SS]] of less than a day and returns
// it in seconds. Postgres offsets stay within ±15:59:59.
func (s *scanner) offset() int {
	sign := 1
	switch s.peek() {
	case '+':
	case '-':
		sign = -1
	default:
		s.ok = false
		return 0
	}
	s.text = s.text[1:]
	seconds := s.digits(2, 2) * 3600
	if s.peek() == ':' {
		seconds += s.sep(':').digits(2, 2) * 60
		if s.peek() == ':' {
			seconds += s.sep(':').digits(2, 2)
		}
	}
	if seconds >= 86400 {
		s.ok = false
	}
	return sign * seconds
}

// maxArrayDims is the most dimensions a Postgres array has (MAXDIM in the
// Postgres source).
const maxArrayDims = 6

// appendArray converts an array literal such as {1,NULL,"a \"b\""} or
// [0:1]={{1,2},{3,4}} to a JSON array, nesting one JSON array per
// dimension. Lower bounds other than 1 are dropped with the [lo:hi]= prefix.
func appendArray(dst, text []byte, elem *Type, delim byte) ([]byte, error) {
	if elem == nil {
		return dst, errors.New("array type has no element type")
	}
	p := arrayParser{text: text, elem: elem, delim: delim}
	if err := p.skipBounds(); err != nil {
		return dst, err
	}
	p.skipSpace()
	if p.peek() != '{' {
		return dst, errors.New("invalid array, expected {")
	}
	dst, err := p.array(dst, 1)
	if err != nil {
		return dst, err
	}
	p.skipSpace()
	if p.pos != len(p.text) {
		return dst, errors.New("invalid array, unexpected text after the closing }")
	}
	return dst, nil
}

// arrayParser reads the text form that array_out writes. Elements are
// quoted when they are empty, equal NULL in any case, or contain braces, the
// delimiter, quotes, backslashes or whitespace. Inside an element a
// backslash escapes the next byte.
type arrayParser struct {
	text    []byte
	pos     int
	elem    *Type
	delim   byte
	scratch []byte // the current element with its escapes removed
}

func (p *arrayParser) peek() byte {
	if p.pos < len(p.text) {
		return p.text[p.pos]
	}
	return 0
}

func (p *arrayParser) skipSpace() {
	for p.pos < len(p.text) && isArraySpace(p.text[p.pos]) {
		p.pos++
	}
}

// isArraySpace reports whether c is whitespace to array_in, which uses C's
// isspace.
func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// skipBounds moves past a dimension prefix such as [0:2] or [1:2][-1:0]=.
func (p *arrayParser) skipBounds() error {
	if p.peek() != '[' {
		return nil
	}
	for p.pos < len(p.text) && p.text[p.pos] != '=' {
		c := p.text[p.pos]
		if c != '[' && c != ']' && c != ':' && c != '-' && (c < '0' || c > '9') {
			return errors.New("invalid array dimensions, expected [lower:upper]=")
		}
		p.pos++
	}
	if p.pos == len(p.text) {
		return errors.New("invalid array dimensions, missing =")
	}
	p.pos++
	return nil
}

// array converts the array or sub-array that starts at the current '{'.
// depth counts its dimension.
func (p *arrayParser) array(dst []byte, depth int) ([]byte, error) {
	if depth > maxArrayDims {
		return dst, fmt.Errorf("invalid array, more than %d dimensions", maxArrayDims)
	}
	p.pos++
	dst = append(dst, '[')
	p.skipSpace()
	if p.peek() == '}' {
		p.pos++
		return append(dst, ']'), nil
	}
	for {
		var err error
		if dst, err = p.element(dst, depth); err != nil {
			return dst, err
		}
		p.skipSpace()
		switch p.peek() {
		case p.delim:
			p.pos++
			dst = append(dst, ',')
		case '}':
			p.pos++
			return append(dst, ']'), nil
		default:
			return dst, fmt.Errorf("invalid array, expected %q or } after an element", p.delim)
		}
	}
}

// element converts one element, which is a sub-array, a quoted value, an
// unquoted value or NULL.
func (p *arrayParser) element(dst []byte, depth int) ([]byte, error) {
	p.skipSpace()
	switch p.peek() {
	case '{':
		return p.array(dst, depth+1)
	case '"':
		text, err := p.quoted()
		if err != nil {
			return dst, err
		}
		return p.elem.AppendJSON(dst, text)
	}
	text, escaped, err := p.unquoted()
	if err != nil {
		return dst, err
	}
	if !escaped && len(text) == 4 && bytes.EqualFold(text, []byte("NULL")) {
		return append(dst, "null"...), nil
	}
	return p.elem.AppendJSON(dst, text)
}

// quoted reads a quoted element and returns its text without quotes and
// escapes. The result is valid until the next element is read.
func (p *arrayParser) quoted() ([]byte, error) {
	p.pos++
	p.scratch = p.scratch[:0]
	start, escaped := p.pos, false
	for p.pos < len(p.text) {
		switch p.text[p.pos] {
		case '"':
			text := p.text[start:p.pos]
			p.pos++
			if escaped {
				p.scratch = append(p.scratch, text...)
				return p.scratch, nil
			}
			return text, nil
		case '\\':
			if p.pos+1 == len(p.text) {
				return nil, errors.New("invalid array, unterminated quoted element")
			}
			p.scratch = append(p.scratch, p.text[start:p.pos]...)
			p.scratch = append(p.scratch, p.text[p.pos+1])
			p.pos += 2
			start, escaped = p.pos, true
		default:
			p.pos++
		}
	}
	return nil, errors.New("invalid array, unterminated quoted element")
}

// unquoted reads an unquoted element up to the next delimiter or '}' and
// returns its text without escapes and trailing whitespace, and whether it
// had escapes. The result is valid until the next element is read.
func (p *arrayParser) unquoted() ([]byte, bool, error) {
	p.scratch = p.scratch[:0]
	start, escaped := p.pos, false
	for p.pos < len(p.text) {
		c := p.text[p.pos]
		if c == p.delim || c == '}' {
			break
		}
		switch c {
		case '{', '"':
			return nil, false, fmt.Errorf("invalid array, unexpected %q inside an unquoted element", c)
		case '\\':
			if p.pos+1 == len(p.text) {
				return nil, false, errors.New("invalid array, backslash at the end")
			}
			p.scratch = append(p.scratch, p.text[start:p.pos]...)
			p.scratch = append(p.scratch, p.text[p.pos+1])
			p.pos += 2
			start, escaped = p.pos, true
		default:
			p.pos++
		}
	}
	text := bytes.TrimRightFunc(p.text[start:p.pos], func(r rune) bool { return r < utf8.RuneSelf && isArraySpace(byte(r)) })
	if escaped {
		p.scratch = append(p.scratch, text...)
		return p.scratch, true, nil
	}
	if len(text) == 0 {
		return nil, false, errors.New("invalid array, empty unquoted element")
	}
	return text, false, nil
}
