// Package credit holds what every package shares about credits: the exact
// amount type, credits as a fixed-point integer of micro-credits (money is
// never float), and the kinds the catalog and the balances both name: overage
// policies and grant types.
package credit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/shopspring/decimal"
)

// Scale is the number of decimal places an Amount keeps: 1 credit = 10^6 units.
const Scale = 6

// Unit is one whole credit in micro-credits.
const Unit Amount = 1_000_000

// MaxAmount bounds every amount and balance in absolute value: 9,000,000,000
// credits. It keeps every sum of two amounts below 2^54 and every amount below
// 2^53, so Redis Lua (whose numbers are doubles) stays exact on them.
const MaxAmount Amount = 9_000_000_000 * Unit

// Amount is a quantity of credits in micro-credits (10^-6 credit).
type Amount int64

// Sentinel errors of conversions.
var (
	ErrTooPrecise = errors.New("credit: more than 6 decimal places")
	ErrOutOfRange = errors.New("credit: beyond ±9,000,000,000 credits")
)

// FromDecimal converts exactly; it fails rather than round.
func FromDecimal(d decimal.Decimal) (Amount, error) {
	scaled := d.Shift(Scale)
	if !scaled.Equal(scaled.Truncate(0)) {
		return 0, fmt.Errorf("%w: %s", ErrTooPrecise, d)
	}
	if scaled.Abs().GreaterThan(decimal.NewFromInt(int64(MaxAmount))) {
		return 0, fmt.Errorf("%w: %s", ErrOutOfRange, d)
	}
	return Amount(scaled.IntPart()), nil
}

// RoundDecimal converts d rounding half away from zero to 6 places, the
// documented rounding rule of rated credits.
func RoundDecimal(d decimal.Decimal) (Amount, error) {
	return FromDecimal(d.Round(Scale))
}

// Parse reads a decimal string such as "12.5" exactly.
func Parse(s string) (Amount, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return 0, fmt.Errorf("credit: %q is not a decimal number", s)
	}
	return FromDecimal(d)
}

// MustParse is Parse for constants in tests and examples; it panics on error.
func MustParse(s string) Amount {
	a, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return a
}

// Credits makes an Amount of whole credits.
func Credits(n int64) Amount { return Amount(n) * Unit }

// Decimal is the amount in credits.
func (a Amount) Decimal() decimal.Decimal { return decimal.New(int64(a), -Scale) }

// String is the amount in credits with no trailing zeros: "12.5", "-3", "0.000001".
func (a Amount) String() string { return a.Decimal().String() }

// Valid reports whether a is within ±MaxAmount.
func (a Amount) Valid() bool { return a >= -MaxAmount && a <= MaxAmount }

// MarshalJSON writes a decimal string, so no JSON reader turns it into a float.
func (a Amount) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

// UnmarshalJSON accepts a decimal string or a JSON number, exactly.
func (a *Amount) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		var err error
		if s, err = strconv.Unquote(s); err != nil {
			return fmt.Errorf("credit: bad string %s", b)
		}
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}
