package canon

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

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
