package rating

import (
	"errors"
	"math/bits"
	"strconv"

	"github.com/shopspring/decimal"
)

// Number is an exact decimal dimension value: Mant × 10^-Scale. It is a plain
// value so events carry quantities without allocating.
type Number struct {
	Mant  int64
	Scale uint8 // 0..MaxScale
}

// MaxScale bounds the decimal places of a Number, so 10^Scale fits a uint64.
const MaxScale = 18

// ErrBadNumber means a dimension value is not a decimal number that fits.
var ErrBadNumber = errors.New("rating: not a decimal number within range")

var pow10 = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// ParseNumber reads a JSON number or a decimal string ("12", "-0.5", "1.5e3")
// exactly and without allocating. Trailing fraction zeros are dropped, so equal
// values compare equal.
func ParseNumber(s string) (Number, error) { return parseNumber(s) }

// ParseNumberBytes is ParseNumber for raw JSON bytes.
func ParseNumberBytes(b []byte) (Number, error) { return parseNumber(b) }

func parseNumber[T string | []byte](s T) (Number, error) {
	i, n := 0, len(s)
	neg := false
	if i < n && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	var mant uint64
	scale := 0
	digits, seenDot := 0, false
	for ; i < n; i++ {
		c := s[i]
		if c == '.' {
			if seenDot {
				return Number{}, ErrBadNumber
			}
			seenDot = true
			continue
		}
		if c < '0' || c > '9' {
			break
		}
		digits++
		hi, lo := bits.Mul64(mant, 10)
		lo, carry := bits.Add64(lo, uint64(c-'0'), 0)
		if hi != 0 || carry != 0 {
			return Number{}, ErrBadNumber
		}
		mant = lo
		if seenDot {
			scale++
		}
	}
	if digits == 0 {
		return Number{}, ErrBadNumber
	}
	if i < n {
		if s[i] != 'e' && s[i] != 'E' {
			return Number{}, ErrBadNumber
		}
		i++
		eneg := false
		if i < n && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		if i == n {
			return Number{}, ErrBadNumber
		}
		e := 0
		for ; i < n; i++ {
			c := s[i]
			if c < '0' || c > '9' || e > 1000 {
				return Number{}, ErrBadNumber
			}
			e = e*10 + int(c-'0')
		}
		if eneg {
			scale += e
		} else {
			scale -= e
		}
	}
	for scale > 0 && mant != 0 && mant%10 == 0 {
		mant /= 10
		scale--
	}
	if mant == 0 {
		scale = 0
	}
	for scale < 0 {
		hi, lo := bits.Mul64(mant, 10)
		if hi != 0 {
			return Number{}, ErrBadNumber
		}
		mant = lo
		scale++
	}
	if scale > MaxScale || mant > 1<<63-1 {
		return Number{}, ErrBadNumber
	}
	v := int64(mant)
	if neg {
		v = -v
	}
	return Number{Mant: v, Scale: uint8(scale)}, nil
}

// NumberOf is an integer Number.
func NumberOf(n int64) Number { return Number{Mant: n} }

// Decimal is the exact value.
func (n Number) Decimal() decimal.Decimal { return decimal.New(n.Mant, -int32(n.Scale)) }

// String is the exact decimal text.
func (n Number) String() string { return n.Decimal().String() }

// Equal compares values exactly, whatever their scales, without allocating.
func (n Number) Equal(o Number) bool {
	if n.Scale > o.Scale {
		n, o = o, n
	}
	m := n.Mant
	for s := n.Scale; s < o.Scale; s++ {
		if m > (1<<63-1)/10 || m < -(1<<63-1)/10 {
			return false
		}
		m *= 10
	}
	return m == o.Mant
}

// MarshalJSON writes a decimal string.
func (n Number) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(n.String())), nil }

// UnmarshalJSON accepts a JSON number or a decimal string.
func (n *Number) UnmarshalJSON(b []byte) error {
	if len(b) > 1 && b[0] == '"' {
		b = b[1 : len(b)-1]
	}
	v, err := ParseNumberBytes(b)
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// mulDivRound returns a×b/d rounded half away from zero (all operands are
// non-negative), and false when the result does not fit in 63 bits.
func mulDivRound(a, b, d uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	if hi >= d {
		return 0, false
	}
	q, r := bits.Div64(hi, lo, d)
	if q > 1<<63-1 {
		return 0, false
	}
	// r >= d-r, i.e. 2r >= d, without overflowing.
	if r >= d-r {
		q++
	}
	if q > 1<<63-1 {
		return 0, false
	}
	return q, true
}
