package canon

import (
	"bytes"
	"strconv"
)

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
