package engine

import (
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// splitter hands an event's balance result to its rated lines in order. The
// balance drew the event's total in burn-down order; giving the first line
// the first credits drawn is exactly what drawing the lines one after the
// other would have done. A shortfall falls on the last lines.
type splitter struct {
	draws             []balance.Draw
	di                int
	used              credit.Amount // taken from draws[di] so far
	overage, unfunded credit.Amount
}

func newSplitter(lr *balance.LineResult) splitter {
	return splitter{draws: lr.Draws, overage: lr.Overage, unfunded: lr.Unfunded}
}

// take fills row's funded, unfunded and status, appending its draws to ids
// and amounts (drawSlab then points the row at them).
func (s *splitter) take(row *archive.RatedRow, ids []string, amounts []credit.Amount) ([]string, []credit.Amount) {
	need := row.Credits
	for need > 0 && s.di < len(s.draws) {
		d := s.draws[s.di]
		t := min(need, d.Amount-s.used)
		ids = append(ids, d.Grant)
		amounts = append(amounts, t)
		row.Funded += t
		need -= t
		s.used += t
		if s.used == d.Amount {
			s.di++
			s.used = 0
		}
	}
	row.Status = archive.StatusApplied
	if need > 0 && s.overage > 0 {
		t := min(need, s.overage)
		s.overage -= t
		need -= t
		row.Unfunded += t
		row.Status = archive.StatusOverage
	}
	if need > 0 {
		// What is left is unfunded (the balance store reports it so).
		t := min(need, s.unfunded)
		s.unfunded -= t
		row.Unfunded += need
		row.Status = archive.StatusUnfunded
	}
	return ids, amounts
}
