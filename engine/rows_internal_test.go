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

// An event's dimensions reach its rows as parallel arrays, numbers as
// their exact text, shared by the event's lines, from per-batch buffers:
// they were two slices and a math/big decimal per event.
func TestRowsDimensionsAllocatePerBatch(t *testing.T) {
	e := &Engine{cfg: Config{Now: time.Now}, grace: 15 * time.Minute}
	msgs, events, lines, refs, batches, results := rowsFixture(1000)
	for i := range events {
		events[i].Dims = []rating.Dim{{Key: "model", Str: "gpt-x"}, {Key: "tokens", Num: rating.Number{Mant: int64(1500 + i), Scale: uint8(i % 4)}, IsNum: true}}
	}
	usage, _, _ := e.rows(msgs, events, lines, refs, batches, results)
	for i, r := range usage {
		ev := &events[i/2]
		if fmt.Sprint(r.DimKeys, r.DimValues) != fmt.Sprint([]string{"model", "tokens"}, []string{"gpt-x", ev.Dims[1].Num.String()}) {
			t.Fatalf("row %d: dims %v %v, want tokens %s", i, r.DimKeys, r.DimValues, ev.Dims[1].Num)
		}
	}
	allocs := testing.AllocsPerRun(5, func() { e.rows(msgs, events, lines, refs, batches, results) })
	if allocs > 100 {
		t.Errorf("%.0f allocations for 1,000 events with dimensions, want ≤ 100 per batch", allocs)
	}
}

func TestAppendNumberMatchesString(t *testing.T) {
	mants := []int64{0, 1, -1, 5, 10, 100, 1500, -1500, 123456789, 1000000000000000000, -9223372036854775807, -9223372036854775808, 9223372036854775807}
	for _, m := range mants {
		for s := uint8(0); s <= rating.MaxScale; s++ {
			n := rating.Number{Mant: m, Scale: s}
			if got, want := string(appendNumber([]byte("x"), n)), "x"+n.String(); got != want {
				t.Errorf("%d×10^-%d: %q, want %q", m, s, got, want)
			}
		}
	}
}
