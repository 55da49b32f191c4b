package engine

import (
	"strconv"
	"unsafe"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/rating"
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

// dimSlab backs the rows' DimKeys and DimValues for one batch, and the
// text of numeric values: a few allocations per batch instead of two
// slices and a decimal per event. Fresh per batch, as drawSlab.
type dimSlab struct {
	keys, values []string
	text         []byte // numbers' text; never rewritten, so strings into it stay valid
}

func newDimSlab(events []rating.Event, refs []eventRef) dimSlab {
	n := 0
	for _, r := range refs {
		n += len(events[r.msg].Dims)
	}
	return dimSlab{keys: make([]string, 0, n), values: make([]string, 0, n), text: make([]byte, 0, 8*n)}
}

// columns are ev's dimensions as the archive's parallel arrays, shared by
// the event's lines; numbers as their exact decimal text.
func (s *dimSlab) columns(ev *rating.Event) (keys, values []string) {
	if len(ev.Dims) == 0 {
		return nil, nil
	}
	lo := len(s.keys)
	for i := range ev.Dims {
		d := &ev.Dims[i]
		v := d.Str
		if d.IsNum {
			start := len(s.text)
			s.text = appendNumber(s.text, d.Num)
			v = unsafe.String(&s.text[start], len(s.text)-start)
		}
		s.keys, s.values = append(s.keys, d.Key), append(s.values, v)
	}
	hi := len(s.keys)
	return s.keys[lo:hi:hi], s.values[lo:hi:hi]
}

// appendNumber appends n's text as rating.Number.String gives it: the
// shortest exact decimal ("1500", "-0.5"), without a decimal.
func appendNumber(dst []byte, n rating.Number) []byte {
	u := uint64(n.Mant)
	if n.Mant < 0 {
		dst = append(dst, '-')
		u = -u
	}
	var digits [24]byte
	d := strconv.AppendUint(digits[:0], u, 10)
	scale := int(n.Scale)
	for scale > 0 && len(d) > 1 && d[len(d)-1] == '0' { // trailing fraction zeros
		d, scale = d[:len(d)-1], scale-1
	}
	if scale > 0 && len(d) == 1 && d[0] == '0' {
		scale = 0
	}
	if scale == 0 {
		if u == 0 && n.Mant < 0 {
			dst = dst[:len(dst)-1]
		}
		return append(dst, d...)
	}
	if len(d) <= scale {
		dst = append(dst, '0', '.')
		for i := len(d); i < scale; i++ {
			dst = append(dst, '0')
		}
		return append(dst, d...)
	}
	dst = append(dst, d[:len(d)-scale]...)
	dst = append(dst, '.')
	return append(dst, d[len(d)-scale:]...)
}
