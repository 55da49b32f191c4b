package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/rating"
)

// rowsFixture: n events of two rated lines each (3 + 2 credits), in one
// balance batch, each drawn 4 from grant "a" and 1 from "b".
func rowsFixture(n int) ([]kafka.Message, []rating.Event, []rating.Line, []eventRef, []balance.Batch, []balance.BatchResult) {
	now := time.Now()
	msgs := make([]kafka.Message, n)
	events := make([]rating.Event, n)
	lines := make([]rating.Line, 0, 2*n)
	refs := make([]eventRef, n)
	b := balance.Batch{Subscription: "s", Topic: "t"}
	res := balance.BatchResult{Subscription: "s"}
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: "t", Offset: int64(i)}
		events[i] = rating.Event{ID: fmt.Sprint("e", i), Name: "llm.call", Timestamp: now}
		for _, c := range []int64{3, 2} {
			lines = append(lines, rating.Line{SubscriptionID: "s", CustomerID: "c", FeatureID: "f",
				Quantity: rating.Number{Mant: c * 1000}, Credits: credit.Amount(c), Money: rating.Money(c * 40)})
		}
		refs[i] = eventRef{msg: i, first: 2 * i, last: 2*i + 2, batch: 0, line: i}
		b.Lines = append(b.Lines, balance.Line{EventID: events[i].ID, Offset: int64(i), Time: now, Credits: 5})
		res.Lines = append(res.Lines, balance.LineResult{Status: balance.Applied,
			Draws: []balance.Draw{{Grant: "a", Amount: 4}, {Grant: "b", Amount: 1}}})
	}
	return msgs, events, lines, refs, []balance.Batch{b}, []balance.BatchResult{res}
}

// Building a batch's archive rows allocates per batch, not per row: the
// rows' Decimals of repeated values and their grant draws come from
// per-engine and per-batch buffers (BenchmarkProcessAssembly).
func TestRowsAllocatePerBatch(t *testing.T) {
	e := &Engine{cfg: Config{Now: time.Now}, grace: 15 * time.Minute}
	msgs, events, lines, refs, batches, results := rowsFixture(1000)
	usage, _, c := e.rows(msgs, events, lines, refs, batches, results)
	if len(usage) != 2000 || c.applied != 1000 {
		t.Fatalf("%d rows, %d applied; want 2000, 1000", len(usage), c.applied)
	}
	for i, r := range usage[:2] {
		want := [][]string{{"a"}, {"a", "b"}}[i]
		if fmt.Sprint(r.GrantIDs) != fmt.Sprint(want) || r.Funded != r.Credits || r.Quantity.IntPart() != int64(r.Credits)*1000 || !r.MoneyValue.Equal(decimal.New(int64(r.Credits)*40, -9)) {
			t.Errorf("row %d: grants %v %v funded %s quantity %s", i, r.GrantIDs, r.GrantAmounts, r.Funded, r.Quantity)
		}
	}
	// a row's draws are its own: appending to one leaves the next intact
	_ = append(usage[0].GrantIDs, "x")
	_ = append(usage[0].GrantAmounts, 99)
	if usage[1].GrantIDs[0] != "a" || usage[1].GrantAmounts[0] != 1 {
		t.Errorf("row 1's draws changed by an append to row 0's: %v %v", usage[1].GrantIDs, usage[1].GrantAmounts)
	}
	allocs := testing.AllocsPerRun(5, func() { e.rows(msgs, events, lines, refs, batches, results) })
	if allocs > 100 {
		t.Errorf("%.0f allocations for 2,000 rows, want ≤ 100 per batch", allocs)
	}
}
