// Package canon writes JSON exactly as JavaScript's JSON.stringify does, so a
// receiver that re-serializes a parsed payload gets the same bytes.
//
// It differs from encoding/json in four ways that matter for signed payloads.
// It does not escape <, > and &. It writes U+2028 and U+2029 literally. It
// writes numbers in ECMAScript Number::toString form, with -0 as 0. It orders
// object members as JavaScript orders properties, with array-index keys first
// in ascending numeric order and all other keys in insertion order.
package canon

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// errNonFinite is returned for NaN and the infinities, which JSON cannot
// represent as numbers.
var errNonFinite = errors.New("NaN and infinities have no JSON number form")

const hexDigits = "0123456789abcdef"

// plainASCII marks the ASCII bytes that JSON.stringify copies unchanged.
var plainASCII = func() (table [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		table[c] = c != '"' && c != '\\'
	}
	return table
}()

// AppendString appends s as a JSON string literal the way JSON.stringify
// writes it: `"` and `\` escaped, \b \f \n \r \t as short escapes, other
// control characters below U+0020 as \u00XX in lowercase hex, and everything
// else literally. Invalid UTF-8 bytes are written as U+FFFD, one per byte.
func AppendString(dst []byte, s string) []byte {
	return appendString(dst, s)
}

// AppendStringBytes is AppendString for text in a byte slice, which it
// spares the caller from converting to a string.
func AppendStringBytes(dst []byte, s []byte) []byte {
	return appendString(dst, s)
}

func appendString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedASCII(dst, c)
			i++
			start = i
			continue
		}
		var buf [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(buf[:copy(buf[:], s[i:])])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEscapedASCII appends the escape JSON.stringify uses for c, which is
// `"`, `\` or a control character.
func appendEscapedASCII(dst []byte, c byte) []byte {
	switch c {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}

// AppendNumber appends f as ECMAScript's Number::toString writes it: the
// shortest digits that round-trip, in plain decimal form when
// 1e-7 <= |f| < 1e21 and in exponent form such as 1e+21 or 1.5e-7 otherwise.
// Negative zero is written as 0. NaN and the infinities return an error
// because JSON has no form for them.
func AppendNumber(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("formatting %v as a JSON number: %w", f, errNonFinite)
	}
	var d shortest
	d.set(f)
	return d.appendJS(dst), nil
}

// shortest is a finite float64 in decimal form: the value is
// 0.digits × 10^point, negated when neg is set. Zero has no digits.
type shortest struct {
	neg    bool
	digits [24]byte
	n      int // number of digits in use
	point  int
}

// set stores the shortest round-trip digits of f, which must be finite.
func (d *shortest) set(f float64) {
	*d = shortest{}
	if f == 0 {
		return
	}
	var buf [32]byte
	// The 'e' format with precision -1 writes the shortest digits as
	// [-]d[.ddd]e±dd, with no trailing zeros in the mantissa.
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	if b[0] == '-' {
		d.neg = true
		b = b[1:]
	}
	i := 0
	for ; b[i] != 'e'; i++ {
		if b[i] != '.' {
			d.digits[d.n] = b[i]
			d.n++
		}
	}
	exp := 0
	for _, c := range b[i+2:] {
		exp = exp*10 + int(c-'0')
	}
	if b[i+1] == '-' {
		exp = -exp
	}
	d.point = exp + 1
}

// appendJS writes d following the cases of ECMAScript Number::toString, where
// k is the digit count and n the decimal point position.
func (d *shortest) appendJS(dst []byte) []byte {
	if d.n == 0 {
		return append(dst, '0')
	}
	if d.neg {
		dst = append(dst, '-')
	}
	digits, k, n := d.digits[:d.n], d.n, d.point
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
		return dst
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		return append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	}
	dst = append(dst, digits[0])
	if k > 1 {
		dst = append(dst, '.')
		dst = append(dst, digits[1:]...)
	}
	dst = append(dst, 'e')
	if n-1 >= 0 {
		dst = append(dst, '+')
	}
	return strconv.AppendInt(dst, int64(n-1), 10)
}

// maxArrayIndex is the largest array index in ECMAScript, 2^32 - 2. Keys that
// spell such an index in canonical decimal form come first in property order.
const maxArrayIndex = 1<<32 - 2

// arrayIndex reports whether key is the canonical decimal form of an
// ECMAScript array index (0 to 2^32-2, no sign and no leading zeros), and
// returns the index.
func arrayIndex[T string | []byte](key T) (uint32, bool) {
	if len(key) == 0 || len(key) > 10 || (key[0] == '0' && len(key) > 1) {
		return 0, false
	}
	var v uint64
	for i := range len(key) {
		c := key[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > maxArrayIndex {
		return 0, false
	}
	return uint32(v), true
}

// positionsThreshold is the member count above which Object finds earlier
// members with the same key through a map instead of a linear scan.
const positionsThreshold = 16

// Object is a JSON object under construction whose member values are already
// canonical JSON. AppendTo writes the members in JavaScript property order:
// array-index keys such as "2" and "10" first in ascending numeric order, then
// the other keys in insertion order. A key added twice keeps its first
// position and its last value, as assigning a property twice does in
// JavaScript. The zero value is an empty object ready for use, and Reset
// empties it for reuse.
type Object struct {
	// members contains the array-index members first, sorted by index,
	// followed by the other members in insertion order.
	members []member
	indexed int
	// positions maps a non-index key to its position after the array-index
	// members. It is built once the object passes positionsThreshold members.
	positions map[string]int
}

type member struct {
	key   string
	index uint32
	raw   []byte
}

// Add adds a member whose value raw is canonical JSON text, for example the
// output of AppendString, AppendNumber or Canonicalize. Object keeps raw
// without copying it, so the caller must not modify raw before AppendTo.
func (o *Object) Add(key string, raw []byte) {
	if index, ok := arrayIndex(key); ok {
		o.addIndexed(key, index, raw)
		return
	}
	if pos, ok := o.findNamed(key); ok {
		o.members[o.indexed+pos].raw = raw
		return
	}
	o.members = append(o.members, member{key: key, raw: raw})
	named := len(o.members) - o.indexed
	if o.positions != nil {
		o.positions[key] = named - 1
	} else if named > positionsThreshold {
		o.positions = make(map[string]int, 2*named)
		for i, m := range o.members[o.indexed:] {
			o.positions[m.key] = i
		}
	}
}

// addIndexed inserts or replaces a member whose key is an array index,
// keeping the array-index members sorted.
func (o *Object) addIndexed(key string, index uint32, raw []byte) {
	lo, hi := 0, o.indexed
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if o.members[mid].index < index {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < o.indexed && o.members[lo].index == index {
		o.members[lo].raw = raw
		return
	}
	o.members = append(o.members, member{})
	copy(o.members[lo+1:], o.members[lo:])
	o.members[lo] = member{key: key, index: index, raw: raw}
	o.indexed++
}

// findNamed returns the position of a non-index key among the non-index
// members.
func (o *Object) findNamed(key string) (int, bool) {
	if o.positions != nil {
		pos, ok := o.positions[key]
		return pos, ok
	}
	for i, m := range o.members[o.indexed:] {
		if m.key == key {
			return i, true
		}
	}
	return 0, false
}

// Len returns the number of distinct keys added.
func (o *Object) Len() int { return len(o.members) }

// Reset removes all members and keeps the member slice for reuse.
func (o *Object) Reset() {
	clear(o.members)
	o.members = o.members[:0]
	o.indexed = 0
	o.positions = nil
}

// AppendTo appends the object as JSON text in JavaScript property order.
func (o *Object) AppendTo(dst []byte) []byte {
	dst = append(dst, '{')
	for i, m := range o.members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, m.raw...)
	}
	return append(dst, '}')
}

// maxDepth is the deepest nesting of arrays and objects that Canonicalize
// accepts, so hostile input cannot exhaust the stack.
const maxDepth = 1000

// Canonicalize appends the JSON text src as JSON.stringify(JSON.parse(src))
// would write it, except that it loses no digits. A number whose JavaScript
// form denotes a different decimal value than its source text, such as
// 12345678901234567890, 0.1000000000000000000001 or 1e400, is written as a
// JSON string that contains the source text. Numbers whose value survives,
// such as 1.0, 1e2 or -0, become JavaScript numbers (1, 100, 0). Duplicate
// keys keep the first key's position and the last key's value, as in
// JavaScript.
//
// Canonicalize returns an error for invalid JSON and for nesting deeper than
// 1000 arrays and objects. On error it returns dst with its original length.
func Canonicalize(dst, src []byte) ([]byte, error) {
	c := canonicalizers.Get().(*canonicalizer)
	c.src, c.pos, c.dst = src, 0, dst
	err := c.value(0)
	if err == nil {
		c.skipSpace()
		if c.pos < len(src) {
			err = c.syntaxError("unexpected data after the top-level value")
		}
	}
	out := c.dst
	c.src, c.dst, c.members, c.order = nil, nil, c.members[:0], c.order[:0]
	if cap(c.members) <= maxPooledMembers && cap(c.order) <= maxPooledMembers {
		canonicalizers.Put(c)
	}
	if err != nil {
		return dst, err
	}
	return out, nil
}

// canonicalizer parses JSON text and writes the canonical form in one pass.
// Objects are written in source order and rewritten in place once complete,
// which is needed only when they have array-index keys out of property order
// or duplicate keys.
type canonicalizer struct {
	src []byte
	pos int
	dst []byte
	// members contains the members written so far of every object being
	// parsed, innermost object last.
	members []objectMember
	order   []int32 // scratch list of member positions
}

// canonicalizers keeps canonicalizers with their member and order slices for
// reuse, so that Canonicalize does not allocate in the common case.
var canonicalizers = sync.Pool{New: func() any { return new(canonicalizer) }}

// maxPooledMembers bounds the member and order slices kept in the pool, so
// one huge payload does not pin its memory.
const maxPooledMembers = 1 << 12

// objectMember locates one member `"key":value` written to dst.
type objectMember struct {
	start   int // offset of the key's opening quote
	colon   int // offset of the ':' after the key
	end     int // offset just after the value
	index   uint32
	isIndex bool // the key is an array index
	dup     bool // an earlier member has the same key
	last    int  // position in the object of the last member with this key
}

func (c *canonicalizer) syntaxError(msg string) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", c.pos, msg)
}

func (c *canonicalizer) skipSpace() {
	for c.pos < len(c.src) {
		switch c.src[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// peek returns the next source byte, or 0 at the end of the input.
func (c *canonicalizer) peek() byte {
	if c.pos < len(c.src) {
		return c.src[c.pos]
	}
	return 0
}

// value parses one JSON value after optional whitespace. depth is the number
// of arrays and objects that enclose it.
func (c *canonicalizer) value(depth int) error {
	c.skipSpace()
	switch ch := c.peek(); {
	case ch == '{':
		return c.object(depth + 1)
	case ch == '[':
		return c.array(depth + 1)
	case ch == '"':
		return c.string()
	case ch == '-' || ('0' <= ch && ch <= '9'):
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	case c.pos == len(c.src):
		return c.syntaxError("unexpected end of input")
	case ch >= utf8.RuneSelf:
		return c.syntaxError(fmt.Sprintf("invalid byte 0x%02x", ch))
	default:
		return c.syntaxError(fmt.Sprintf("invalid character %q", ch))
	}
}

func (c *canonicalizer) literal(word string) error {
	if len(c.src)-c.pos < len(word) || string(c.src[c.pos:c.pos+len(word)]) != word {
		return c.syntaxError("invalid literal, expected " + word)
	}
	c.pos += len(word)
	c.dst = append(c.dst, word...)
	return nil
}

func (c *canonicalizer) array(depth int) error {
	if depth > maxDepth {
		return c.syntaxError(fmt.Sprintf("nesting deeper than %d levels", maxDepth))
	}
	c.pos++
	c.dst = append(c.dst, '[')
	c.skipSpace()
	if c.peek() == ']' {
		c.pos++
		c.dst = append(c.dst, ']')
		return nil
	}
	for {
		if err := c.value(depth); err != nil {
			return err
		}
		c.skipSpace()
		switch c.peek() {
		case ',':
			c.pos++
			c.dst = append(c.dst, ',')
		case ']':
			c.pos++
			c.dst = append(c.dst, ']')
			return nil
		default:
			return c.syntaxError("expected ',' or ']' after an array element")
		}
	}
}

func (c *canonicalizer) object(depth int) error {
	if depth > maxDepth {
		return c.syntaxError(fmt.Sprintf("nesting deeper than %d levels", maxDepth))
	}
	start, base := len(c.dst), len(c.members)
	c.pos++
	c.dst = append(c.dst, '{')
	c.skipSpace()
	if c.peek() == '}' {
		c.pos++
		c.dst = append(c.dst, '}')
		return nil
	}
	for {
		if err := c.member(depth); err != nil {
			return err
		}
		c.skipSpace()
		switch c.peek() {
		case ',':
			c.pos++
			c.dst = append(c.dst, ',')
		case '}':
			c.pos++
			c.dst = append(c.dst, '}')
			c.finishObject(start, c.members[base:])
			c.members = c.members[:base]
			return nil
		default:
			return c.syntaxError("expected ',' or '}' after an object member")
		}
	}
}

func (c *canonicalizer) member(depth int) error {
	c.skipSpace()
	if c.peek() != '"' {
		return c.syntaxError("expected a string as object key")
	}
	m := objectMember{start: len(c.dst)}
	if err := c.string(); err != nil {
		return err
	}
	// A canonical array-index key has no escapes, so the written key
	// between its quotes is the key itself.
	m.index, m.isIndex = arrayIndex(c.dst[m.start+1 : len(c.dst)-1])
	c.skipSpace()
	if c.peek() != ':' {
		return c.syntaxError("expected ':' after an object key")
	}
	c.pos++
	m.colon = len(c.dst)
	c.dst = append(c.dst, ':')
	if err := c.value(depth); err != nil {
		return err
	}
	m.end = len(c.dst)
	c.members = append(c.members, m)
	return nil
}

// finishObject rewrites the object written at dst[start:] into JavaScript
// property order when its members ms are not already in that order or repeat
// a key.
func (c *canonicalizer) finishObject(start int, ms []objectMember) {
	for i := range ms {
		ms[i].last = i
	}
	if !c.markDuplicates(ms) && inPropertyOrder(ms) {
		return
	}
	c.rewriteObject(start, ms)
}

// inPropertyOrder reports whether the array-index members of a duplicate-free
// object come first and ascend.
func inPropertyOrder(ms []objectMember) bool {
	named := false
	var prev uint32
	for i, m := range ms {
		if !m.isIndex {
			named = true
			continue
		}
		if named || (i > 0 && m.index <= prev) {
			return false
		}
		prev = m.index
	}
	return true
}

func (c *canonicalizer) key(m objectMember) []byte {
	return c.dst[m.start:m.colon]
}

// markDuplicates marks each member whose key an earlier member already has,
// points the first member with that key to the last one, and reports whether
// any key repeats.
func (c *canonicalizer) markDuplicates(ms []objectMember) bool {
	found := false
	if len(ms) <= positionsThreshold {
		for i := 1; i < len(ms); i++ {
			for j := range i {
				if !ms[j].dup && bytes.Equal(c.key(ms[i]), c.key(ms[j])) {
					ms[j].last, ms[i].dup, found = i, true, true
					break
				}
			}
		}
		return found
	}
	// Large objects: sort positions by key, then by position, so members
	// with the same key are adjacent and the first of each run comes first.
	order := c.order[:0]
	for i := range ms {
		order = append(order, int32(i))
	}
	slices.SortFunc(order, func(a, b int32) int {
		if k := bytes.Compare(c.key(ms[a]), c.key(ms[b])); k != 0 {
			return k
		}
		return cmp.Compare(a, b)
	})
	first := order[0]
	for _, i := range order[1:] {
		if bytes.Equal(c.key(ms[i]), c.key(ms[first])) {
			ms[first].last, ms[i].dup, found = int(i), true, true
		} else {
			first = i
		}
	}
	c.order = order
	return found
}

// rewriteObject replaces the object written at dst[start:] with its members
// in property order, each repeated key once with its last value.
//
// NOTE: an object that needs rewriting is copied once for itself and again
// for every enclosing object that needs rewriting, so deep nesting of such
// objects costs up to maxDepth copies of the innermost ones.
func (c *canonicalizer) rewriteObject(start int, ms []objectMember) {
	order := c.order[:0]
	for i, m := range ms {
		if m.isIndex && !m.dup {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int {
		return cmp.Compare(ms[a].index, ms[b].index)
	})

	for i, m := range ms {
		if !m.isIndex && !m.dup {
			order = append(order, int32(i))
		}
	}
	// Write the new form after the old one, then move it into place, so
	// the spare capacity of dst serves as scratch space.
	end := len(c.dst)
	c.dst = append(c.dst, '{')
	for i, pos := range order {
		if i > 0 {
			c.dst = append(c.dst, ',')
		}
		m := ms[pos]
		v := ms[m.last]
		c.dst = append(c.dst, c.dst[m.start:m.colon+1]...)
		c.dst = append(c.dst, c.dst[v.colon+1:v.end]...)
	}
	c.dst = append(c.dst, '}')

	n := copy(c.dst[start:], c.dst[end:])
	c.dst = c.dst[:start+n]
	c.order = order
}

// string parses a JSON string and writes it as JSON.stringify would write
// the string that JSON.parse returns.
func (c *canonicalizer) string() error {
	c.pos++
	c.dst = append(c.dst, '"')
	start := c.pos
	for c.pos < len(c.src) {
		ch := c.src[c.pos]
		switch {
		case ch == '"':
			c.dst = append(c.dst, c.src[start:c.pos]...)
			c.dst = append(c.dst, '"')
			c.pos++
			return nil
		case ch == '\\':
			c.dst = append(c.dst, c.src[start:c.pos]...)
			if err := c.escape(); err != nil {
				return err
			}
			start = c.pos
		case ch < 0x20:
			return c.syntaxError("control character in string")
		case ch < utf8.RuneSelf:
			c.pos++
		default:
			r, size := utf8.DecodeRune(c.src[c.pos:])
			if r == utf8.RuneError && size == 1 {
				c.dst = append(c.dst, c.src[start:c.pos]...)
				c.dst = append(c.dst, "\uFFFD"...)
				start = c.pos + 1
			}
			c.pos += size
		}
	}
	return c.syntaxError("unterminated string")
}

// escape parses the escape sequence at the current position.
func (c *canonicalizer) escape() error {
	if c.pos+1 >= len(c.src) {
		return c.syntaxError("unterminated string")
	}
	ch := c.src[c.pos+1]
	switch ch {
	case '"', '\\':
		c.dst = append(c.dst, '\\', ch)
	case '/':
		c.dst = append(c.dst, '/')
	case 'b', 'f', 'n', 'r', 't':
		c.dst = append(c.dst, '\\', ch)
	case 'u':
		return c.unicodeEscape()
	default:
		return c.syntaxError(fmt.Sprintf("invalid escape \\%c in string", ch))
	}
	c.pos += 2
	return nil
}

// unicodeEscape parses \uXXXX, or a surrogate pair of two such escapes. A
// lone surrogate stays escaped, as JSON.stringify writes it since ES2019.
func (c *canonicalizer) unicodeEscape() error {
	unit, ok := parseHex4(c.src[c.pos+2:])
	if !ok {
		return c.syntaxError(`invalid \u escape in string`)
	}
	c.pos += 6
	r := rune(unit)
	if utf16.IsSurrogate(r) {
		rest := c.src[c.pos:]
		low, ok := rune(0), false
		if r < 0xdc00 && len(rest) >= 6 && rest[0] == '\\' && rest[1] == 'u' {
			var u uint16
			u, ok = parseHex4(rest[2:])
			low = rune(u)
		}
		if !ok || low < 0xdc00 || low > 0xdfff {
			c.dst = append(c.dst, '\\', 'u', hexDigits[unit>>12], hexDigits[unit>>8&0xf],
				hexDigits[unit>>4&0xf], hexDigits[unit&0xf])
			return nil
		}
		r = utf16.DecodeRune(r, low)
		c.pos += 6
	}
	if r < utf8.RuneSelf && !plainASCII[r] {
		c.dst = appendEscapedASCII(c.dst, byte(r))
		return nil
	}
	c.dst = utf8.AppendRune(c.dst, r)
	return nil
}

func parseHex4(b []byte) (uint16, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var v uint16
	for _, ch := range b[:4] {
		switch {
		case '0' <= ch && ch <= '9':
			v = v<<4 | uint16(ch-'0')
		case 'a' <= ch && ch <= 'f':
			v = v<<4 | uint16(ch-'a'+10)
		case 'A' <= ch && ch <= 'F':
			v = v<<4 | uint16(ch-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// number parses a JSON number and writes it as a JavaScript number when that
// keeps its exact decimal value, and as a string of its source text otherwise.
func (c *canonicalizer) number() error {
	start := c.pos
	if !c.scanNumber() {
		return c.syntaxError("invalid number")
	}
	text := c.src[start:c.pos]
	if isShortInteger(text) {
		if string(text) == "-0" {
			text = text[1:]
		}
		c.dst = append(c.dst, text...)
		return nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err == nil {
		var d shortest
		d.set(f)
		if sameDecimal(text, &d) {
			c.dst = d.appendJS(c.dst)
			return nil
		}
	}
	// Out of float64 range, or digits that float64 cannot represent.
	c.dst = append(c.dst, '"')
	c.dst = append(c.dst, text...)
	c.dst = append(c.dst, '"')
	return nil
}

// isShortInteger reports whether the JSON number text is an integer of at most
// 15 digits, which float64 represents exactly and JavaScript writes
// unchanged, except for -0.
func isShortInteger(text []byte) bool {
	if len(text) > 16 {
		return false
	}
	digits := len(text)
	if text[0] == '-' {
		digits--
	}
	return digits <= 15 && bytes.IndexAny(text, ".eE") < 0
}

// scanNumber moves past a number that follows the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and reports whether one was
// there.
func (c *canonicalizer) scanNumber() bool {
	if c.peek() == '-' {
		c.pos++
	}
	switch ch := c.peek(); {
	case ch == '0':
		c.pos++
	case '1' <= ch && ch <= '9':
		c.scanDigits()
	default:
		return false
	}
	if c.peek() == '.' {
		c.pos++
		if c.scanDigits() == 0 {
			return false
		}
	}
	if ch := c.peek(); ch == 'e' || ch == 'E' {
		c.pos++
		if ch := c.peek(); ch == '+' || ch == '-' {
			c.pos++
		}
		if c.scanDigits() == 0 {
			return false
		}
	}
	return true
}

func (c *canonicalizer) scanDigits() int {
	start := c.pos
	for c.pos < len(c.src) && '0' <= c.src[c.pos] && c.src[c.pos] <= '9' {
		c.pos++
	}
	return c.pos - start
}

// sameDecimal reports whether the JSON number text denotes exactly the
// decimal value of d.
func sameDecimal(text []byte, d *shortest) bool {
	neg := text[0] == '-'
	if neg {
		text = text[1:]
	}
	mantissa, exp := text, int64(0)
	if i := bytes.IndexAny(text, "eE"); i >= 0 {
		mantissa, exp = text[:i], parseExponent(text[i+1:])
	}
	dot := bytes.IndexByte(mantissa, '.')
	if dot < 0 {
		dot = len(mantissa)
	}

	first, last := -1, -1
	for i, ch := range mantissa {
		if ch != '.' && ch != '0' {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return d.n == 0 // zero, whatever its sign, is written as 0
	}
	if d.n == 0 || neg != d.neg {
		return false
	}

	k := 0
	for _, ch := range mantissa[first : last+1] {
		if ch == '.' {
			continue
		}
		if k == d.n || ch != d.digits[k] {
			return false
		}
		k++
	}

	firstDigit := first
	if first > dot {
		firstDigit--
	}
	return k == d.n && int64(dot-firstDigit)+exp == int64(d.point)
}

// parseExponent parses [+-]digits, saturating far beyond any float64 exponent.
func parseExponent(b []byte) int64 {
	neg := b[0] == '-'
	if b[0] == '+' || neg {
		b = b[1:]
	}
	var v int64
	for _, ch := range b {
		if v < 1<<40 {
			v = v*10 + int64(ch-'0')
		}
	}
	if neg {
		return -v
	}
	return v
}
