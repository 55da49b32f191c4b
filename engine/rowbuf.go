package engine

import (
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// decimals hands out the archive's Decimal values of (mantissa, scale)
// pairs: decimal.New allocates a big.Int per call, and most rows repeat a
// few quantities and money values (1 email, its price). A Decimal is never
// modified in place, so rows of batches in flight may share one. Bounded:
// it starts afresh past maxDecimals values.
type decimals struct {
	m map[decKey]decimal.Decimal
}

type decKey struct {
	mant  int64
	scale int32
}

const maxDecimals = 1 << 14

func (d *decimals) get(mant int64, scale int32) decimal.Decimal {
	k := decKey{mant, scale}
	if v, ok := d.m[k]; ok {
		return v
	}
	if d.m == nil || len(d.m) >= maxDecimals {
		d.m = make(map[decKey]decimal.Decimal, 256)
	}
	v := decimal.New(mant, -scale)
	d.m[k] = v
	return v
}

// drawSlab backs the rows' GrantIDs and GrantAmounts for one batch: two
// allocations per batch instead of two per row. Fresh per batch, since the
// rows outlive the next batch's assembly.
type drawSlab struct {
	ids     []string
	amounts []credit.Amount
}

func newDrawSlab(results []balance.BatchResult) drawSlab {
	n := 0
	for i := range results {
		for j := range results[i].Lines {
			n += len(results[i].Lines[j].Draws)
		}
	}
	// an event split over several lines may add one draw per line
	n += n / 4
	return drawSlab{ids: make([]string, 0, n), amounts: make([]credit.Amount, 0, n)}
}

// take gives row its grant draws from the slab, capped so that an append by
// a later reader cannot reach the next row's.
func (s *drawSlab) take(row *archive.RatedRow, sp *splitter) {
	lo := len(s.ids)
	s.ids, s.amounts = sp.take(row, s.ids, s.amounts)
	if hi := len(s.ids); hi > lo {
		row.GrantIDs, row.GrantAmounts = s.ids[lo:hi:hi], s.amounts[lo:hi:hi]
	}
}
