package canon

import (
	"fmt"
	"sync"
	"unicode/utf8"
)

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
