package rating

import (
	"errors"

	"github.com/creditmeter/creditmeter/credit"
)

// Quote errors (spend control's /check).
var (
	ErrFeatureNotRated = errors.New("rating: the feature is not in the subscription's conversion table")
	ErrFilterMismatch  = errors.New("rating: the dimensions do not match the feature's meter filters")
	ErrNotWhole        = errors.New("rating: a COUNT meter counts whole events")
)

// Quote is what quantity units of feature would cost subscription subID,
// with the compiled row the engine rates with (the subscription's
// conversion table): for a SUM meter, one event whose dimension carries
// quantity; for a COUNT meter, quantity events (a whole number). dims, when
// given, must match the meter's filters. It changes nothing.
func (t *Table) Quote(subID, featureID string, quantity Number, dims []Dim) (credit.Amount, Money, error) {
	cs := t.subs[subID]
	if cs == nil {
		return 0, 0, ErrUnknownSubscription
	}
	var r *row
	for _, rows := range cs.byEvent {
		for i := range rows {
			if rows[i].featureID == featureID {
				r = &rows[i]
			}
		}
	}
	if r == nil || r.agg == aggReport { // a reporting meter charges nothing
		return 0, 0, ErrFeatureNotRated
	}
	if dims != nil && !matches(r.filters, &Event{Dims: dims}) {
		return 0, 0, ErrFilterMismatch
	}
	if quantity.Mant < 0 {
		return 0, 0, ErrNegativeQuantity
	}
	if quantity.Scale > MaxScale {
		return 0, 0, ErrBadNumber
	}
	var credits uint64
	ok := true
	if r.agg == aggSum { // COUNT and UNIQUE_COUNT: whole units (distinct values)
		credits, ok = mulDivRound(uint64(quantity.Mant), r.rate, pow10[quantity.Scale])
	} else {
		n, whole := quantity.wholeUnits()
		if !whole {
			return 0, 0, ErrNotWhole
		}
		credits, ok = mulDivRound(n, r.rate, 1)
	}
	if !ok || credits > uint64(credit.MaxAmount) {
		return 0, 0, ErrOverflow
	}
	money, ok := mulDivRound(credits, cs.value, uint64(credit.Unit))
	if !ok {
		return 0, 0, ErrOverflow
	}
	return credit.Amount(credits), Money(money), nil
}

// wholeUnits is a non-negative Number as a whole count, if it is one.
func (n Number) wholeUnits() (uint64, bool) {
	p := pow10[n.Scale]
	if uint64(n.Mant)%p != 0 {
		return 0, false
	}
	return uint64(n.Mant) / p, true
}
