package archive

import (
	"fmt"
	"math"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// Credits and money are Int64 columns of fixed-point units: *_micro in
// micro-credits (credit.Scale, 6 decimals, the engine's exact amounts) and
// *_nano in nano-units of the money currency (9 decimals, rating.Money).
// Encoding Decimal(38,9) cost the writer math/big per value, and ClickHouse
// 18.16 crashes (segmentation fault) on GROUP BY over a String and a
// Decimal(38,9). Tables migrated from Decimal keep the old column names as
// ALIAS columns computed from the Int64 ones, so existing SQL still answers.
const (
	MoneyScale = 9 // decimals of the *_nano money columns
)

// intColumn is an Int64 column that replaced a Decimal(38, 9) one.
type intColumn struct {
	old, name string
	scale     int32 // decimals: 6 (micro) or 9 (nano)
	array     bool  // Array(Int64) replacing Array(Decimal(38, 9))
}

type intTable struct {
	table string
	cols  []intColumn
}

var (
	ratedUsageInts = intTable{"rated_usage", []intColumn{
		{old: "credits", name: "credits_micro", scale: credit.Scale},
		{old: "funded_credits", name: "funded_credits_micro", scale: credit.Scale},
		{old: "unfunded_credits", name: "unfunded_credits_micro", scale: credit.Scale},
		{old: "money_value", name: "money_value_nano", scale: MoneyScale},
		{old: "grant_amounts", name: "grant_amounts_micro", scale: credit.Scale, array: true},
	}}
	creditLedgerInts = intTable{"credit_ledger", []intColumn{
		{old: "amount", name: "amount_micro", scale: credit.Scale},
		{old: "balance_after", name: "balance_after_micro", scale: credit.Scale},
	}}
	usageDailyInts = intTable{"usage_daily", []intColumn{
		{old: "credits", name: "credits_micro", scale: credit.Scale},
		{old: "funded_credits", name: "funded_credits_micro", scale: credit.Scale},
		{old: "unfunded_credits", name: "unfunded_credits_micro", scale: credit.Scale},
		{old: "money_value", name: "money_value_nano", scale: MoneyScale},
	}}
)

func (c intColumn) typ() string {
	if c.array {
		return "Array(Int64)"
	}
	return "Int64"
}

func (c intColumn) pow() string { return "1" + strings.Repeat("0", int(c.scale)) }

// fromOld computes the Int64 value from the Decimal column, exactly: the
// Decimal holds at most c.scale decimals (the writer wrote nothing finer).
func (c intColumn) fromOld() string {
	if c.array {
		return fmt.Sprintf("arrayMap(a -> toInt64(a * %s), %s)", c.pow(), c.old)
	}
	return fmt.Sprintf("toInt64(%s * %s)", c.old, c.pow())
}

// alias is the old Decimal(38, 9) column computed from the Int64 one,
// exactly (at most 9.2e18 × 10^9 < 10^38).
func (c intColumn) alias() string {
	if c.array {
		return fmt.Sprintf("arrayMap(a -> toDecimal128(a, 9) / %s, %s)", c.pow(), c.name)
	}
	return fmt.Sprintf("toDecimal128(%s, 9) / %s", c.name, c.pow())
}

// addIntColumns adds the Int64 columns, each computed from its Decimal
// column: on insert for rows that lack it (a writer of the previous
// release), and on read for parts written before it existed.
func addIntColumns(t intTable) string {
	parts := make([]string, len(t.cols))
	for i, c := range t.cols {
		parts[i] = fmt.Sprintf("ADD COLUMN %s %s DEFAULT %s", c.name, c.typ(), c.fromOld())
	}
	return "ALTER TABLE " + t.table + " " + strings.Join(parts, ", ")
}

// materializeInts writes the Int64 columns into the parts written before
// they existed, so the next step may stop computing them from the Decimal
// columns (a DEFAULT each way would be a cycle, which ClickHouse refuses).
func materializeInts(t intTable) Materialize {
	sets := make([]string, len(t.cols))
	for i, c := range t.cols {
		sets[i] = c.name + " = " + c.fromOld()
	}
	return Materialize{Table: t.table, Column: t.cols[0].name,
		Update: "ALTER TABLE " + t.table + " UPDATE " + strings.Join(sets, ", ") + " WHERE 1"}
}

// switchToInts makes the Int64 columns plain ones and the Decimal columns
// ALIAS columns computed from them: a Decimal is no longer stored, and a
// writer of the previous release, which writes the Decimal columns, is
// refused rather than archiving rows whose Int64 columns would be 0.
func switchToInts(t intTable) string {
	var parts []string
	for _, c := range t.cols {
		def := "0"
		if c.array {
			def = "CAST([] AS Array(Int64))"
		}
		parts = append(parts, fmt.Sprintf("MODIFY COLUMN %s %s DEFAULT %s", c.name, c.typ(), def))
	}
	for _, c := range t.cols {
		typ := "Decimal(38, 9)"
		if c.array {
			typ = "Array(Decimal(38, 9))"
		}
		parts = append(parts, fmt.Sprintf("MODIFY COLUMN %s %s ALIAS %s", c.old, typ, c.alias()))
	}
	return "ALTER TABLE " + t.table + " " + strings.Join(parts, ", ")
}

var pow10 = [...]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// FixedInt64 is d in units of 10^-scale as an int64, exactly: false when d
// has more decimals or does not fit (money is refused, never rounded). The
// common case (coefficient below 10^18) allocates nothing.
func FixedInt64(d decimal.Decimal, scale int32) (int64, bool) {
	exp := d.Exponent()
	if d.NumDigits() <= 18 {
		c := d.CoefficientInt64()
		if c == 0 {
			return 0, true
		}
		switch k := exp + scale; {
		case k >= 0:
			if k > 18 {
				return 0, false
			}
			p := pow10[k]
			if c > math.MaxInt64/p || c < math.MinInt64/p {
				return 0, false
			}
			return c * p, true
		case -k > 18:
			return 0, false
		default:
			p := pow10[-k]
			if c%p != 0 {
				return 0, false
			}
			return c / p, true
		}
	}
	s := d.Shift(scale)
	if !s.IsInteger() {
		return 0, false
	}
	b := s.BigInt()
	if !b.IsInt64() {
		return 0, false
	}
	return b.Int64(), true
}

// sumDecimal is the SQL sum of an Int64 column of 10^-scale units as a
// Decimal(38, 0), which cannot overflow where an Int64 sum would wrap; read
// it with unitsToDecimal.
func sumDecimal(expr string) string { return "sum(toDecimal128(" + expr + ", 0))" }

// unitsToDecimal is an integer of 10^-scale units as a decimal.
func unitsToDecimal(units decimal.Decimal, scale int32) decimal.Decimal { return units.Shift(-scale) }
