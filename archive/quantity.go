package archive

import (
	"fmt"
	"math"
	"strings"

	"github.com/shopspring/decimal"
)

// rated_usage.quantity is stored as quantity_mant × 10^-quantity_scale
// (Int64, UInt8), the rater's exact rating.Number: a Decimal(38, 9) cost the
// writer math/big and ~3 allocations per row. quantity stays an ALIAS
// Decimal(38, 9) computed from them, so existing SQL answers as before
// (with more than 9 decimals it shows the first 9, as the Decimal column
// stored them). Migrations 26-27 convert an archive written before.
const maxQuantityScale = 18

// quantityAlias is the Decimal(38, 9) quantity of a row: exact up to 9
// decimals (|mant| < 2^63, × 10^9 < 10^38).
const quantityAlias = "toDecimal128(quantity_mant, 9) / intExp10(quantity_scale)"

// quantityFromDecimal is (mant, scale) of the Decimal(38, 9) column of rows
// written before migration 26: the most decimals (9 down to 0) at which
// the value fits an Int64. Every quantity the engine wrote came from an
// Int64 mantissa, so it has no more decimals than that and the pair is exact.
func quantityFromDecimal() (mant, scale string) {
	var m, sc []string
	for s := 9; s >= 0; s-- {
		limit := decimal.New(math.MaxInt64, int32(-s)).StringFixed(9)
		cond := fmt.Sprintf("abs(quantity) <= toDecimal128('%s', 9)", limit)
		// if() first: multiIf computes every branch of every row, and
		// toInt64 of a value beyond it fails the whole statement.
		m = append(m, cond, fmt.Sprintf("toInt64(if(%s, quantity, toDecimal128(0, 9)) * %d)", cond, pow10[s]))
		sc = append(sc, cond, fmt.Sprint(s))
	}
	// beyond Int64 as a whole number: never written by the engine
	return "multiIf(" + strings.Join(m, ", ") + ", 0)", "multiIf(" + strings.Join(sc, ", ") + ", 0)"
}

func addQuantityColumns() string {
	mant, scale := quantityFromDecimal()
	return "ALTER TABLE rated_usage ADD COLUMN quantity_mant Int64 DEFAULT " + mant + ", ADD COLUMN quantity_scale UInt8 DEFAULT " + scale
}

func materializeQuantity() Materialize {
	mant, scale := quantityFromDecimal()
	return Materialize{Table: "rated_usage", Column: "quantity_mant",
		Update: "ALTER TABLE rated_usage UPDATE quantity_mant = " + mant + ", quantity_scale = " + scale + " WHERE 1"}
}

// switchQuantity makes quantity an ALIAS: a writer of an older release,
// which inserts quantity, is refused rather than archiving zeros.
func switchQuantity() string {
	return "ALTER TABLE rated_usage MODIFY COLUMN quantity_mant Int64 DEFAULT 0, MODIFY COLUMN quantity_scale UInt8 DEFAULT 0, " +
		"MODIFY COLUMN quantity Decimal(38, 9) ALIAS " + quantityAlias
}

// quantityParts is d as mant × 10^-scale, scale ≤ 18: exactly when that
// fits an Int64 mantissa (always, for the rater's quantities); otherwise
// truncated to the most decimals that fit (the Decimal(38, 9) column kept
// 9), false beyond Int64 as a whole number. The common case allocates nothing.
func quantityParts(d decimal.Decimal) (int64, uint8, bool) {
	exp := d.Exponent()
	if d.NumDigits() <= 18 {
		c := d.CoefficientInt64()
		switch {
		case c == 0:
			return 0, 0, true
		case exp <= 0 && exp >= -maxQuantityScale:
			return c, uint8(-exp), true
		}
	}
	for s := int32(0); s <= maxQuantityScale; s++ {
		if t := d.Truncate(s); t.Equal(d) {
			if v, ok := FixedInt64(t, s); ok {
				return v, uint8(s), true
			}
			break // exact only with a mantissa beyond Int64: truncate below
		}
	}
	for s := int32(maxQuantityScale); s >= 0; s-- {
		if v, ok := FixedInt64(d.Truncate(s), s); ok {
			return v, uint8(s), true
		}
	}
	return 0, 0, false
}
