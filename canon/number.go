package canon

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// errNonFinite is returned for NaN and the infinities, which JSON cannot
// represent as numbers.
var errNonFinite = errors.New("NaN and infinities have no JSON number form")

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
