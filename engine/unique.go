package engine

import (
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/rating"
)

// uniqueParts are the UNIQUE_COUNT parts of an event's rated lines, in
// order, for the balance to charge each value once per period (nil: none).
func uniqueParts(lines []rating.Line) []balance.UniquePart {
	var parts []balance.UniquePart
	for i := range lines {
		if l := &lines[i]; l.Unique {
			parts = append(parts, balance.UniquePart{Meter: l.FeatureID, Period: l.Period, PeriodEnd: l.PeriodEnd,
				Value: l.UniqueValue(), Credits: l.Credits})
		}
	}
	return parts
}

// uniqueRow zeroes the archive row of a UNIQUE_COUNT line whose value the
// period had already counted (bit *k of repeats): the event is kept, but
// neither counted nor charged. A line that counted its value records it and
// the period, for a repair to rebuild the set. k counts the event's
// UNIQUE_COUNT lines.
func uniqueRow(row *archive.RatedRow, l *rating.Line, k *int, repeats uint64) {
	if !l.Unique {
		return
	}
	if repeats&(1<<*k) != 0 {
		row.Quantity, row.Credits, row.MoneyValue = decimal.Zero, 0, decimal.Zero
	} else {
		row.UniqueValue, row.UniquePeriod, row.UniquePeriodEnd = l.UniqueValue(), l.Period, l.PeriodEnd
	}
	*k++
}
