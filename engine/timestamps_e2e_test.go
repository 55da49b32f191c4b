package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/rating"
)

type fixedClock struct{ ns atomic.Int64 }

func (c *fixedClock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Issue 13 items 2 and 6a, end to end through the broker, the engine, Redis
// and ClickHouse, two minutes before a month ends: far-future timestamps
// (and pre-1970 ones) are dead-lettered invalid/timestamp; an event two
// minutes ahead is charged and archived at the time its credits were drawn
// (this month, not next); an event in the same second as the subscription's
// sub-second start is charged to it; the month's invoice adds up.
func TestTimestampsEndToEnd(t *testing.T) {
	h := e2e.New(t, 2)
	ctx := context.Background()
	wall := time.Now().UTC()
	monthEnd := time.Date(wall.Year(), wall.Month()+2, 1, 0, 0, 0, 0, time.UTC) // always ahead of the real clock
	start := monthEnd.Add(-10*time.Minute + 500*time.Millisecond)
	now := monthEnd.Add(-2*time.Minute + 500*time.Millisecond)
	period := start.Format("2006-01")
	clk := &fixedClock{}
	clk.ns.Store(start.UnixNano())

	h.Catalog.SetClock(clk.Now)
	bal, err := balance.New(h.RC, balance.Options{Prefix: h.Prefix, GraceWindow: 15 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	acc := &accounts.Accounts{Store: bal, Archive: h.Writer}
	sub, err := seed.Subscribe(ctx, h.Catalog, acc, seed.Subscription{Customer: "acme", Plan: seed.PlanUnfunded, Included: "1000", GrantType: "purchased"})
	if err != nil {
		t.Fatal(err)
	}
	clk.ns.Store(now.UnixNano())

	// The charged events and the time each must be archived at.
	charged := []struct {
		id     string
		ts, at time.Time
	}{
		{"start-300ms", start.Add(-300 * time.Millisecond), start.Add(-300 * time.Millisecond)}, // 6a
		{"now-10s", now.Add(-10 * time.Second), now.Add(-10 * time.Second)},
		{"late-20m", now.Add(-20 * time.Minute), now.Add(-15 * time.Minute)}, // beyond the grace window, before the start
		{"ahead-2m", now.Add(2 * time.Minute), now},                          // next month by its stamp
	}
	refused := []time.Time{
		now.Add(24 * time.Hour), now.Add(5*time.Minute + time.Second),
		time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(2106, 2, 7, 6, 28, 16, 0, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	var msgs []kafka.Message
	add := func(id string, ts time.Time) {
		ev := rating.Event{ID: id, CustomerID: "acme", Name: "email.sent", Timestamp: ts}
		msgs = append(msgs, kafka.Message{Key: []byte("acme"), Value: ingest.AppendJSON(nil, &ev)})
	}
	for i, ts := range refused {
		add(fmt.Sprint("refused-", i), ts)
	}
	for _, c := range charged {
		add(c.id, c.ts)
	}
	h.Produce(msgs)

	rater := rating.NewRater(nil)
	rater.SetGraceWindow(15 * time.Minute)
	if _, err := h.Catalog.Refresh(ctx, rater); err != nil {
		t.Fatal(err)
	}
	m := engine.NewMetrics(prometheus.NewRegistry())
	src, err := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: []string{h.Broker.Addr()}, Topic: e2e.Topic, Group: "timestamps", MaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w := ingest.NewWriters([]string{h.Broker.Addr()}, e2e.Topic, e2e.DLQTopic)
	defer w.Close()
	e, err := engine.New(engine.Config{Topic: e2e.Topic, Metrics: m, Now: clk.Now}, src, w, rater, bal, h.Writer)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, e)
	e2e.WaitConsumed(t, m, len(msgs), time.Minute)
	stop()

	// Dead letters: reason invalid, field timestamp, and the original position.
	dl := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{h.Broker.Addr()}, Topic: e2e.DLQTopic, GroupID: "dlq-timestamps",
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer dl.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for range refused {
		d, err := dl.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("dead letters: %v (seen %v)", err, seen)
		}
		hd := map[string]string{}
		for _, x := range d.Headers {
			hd[x.Key] = string(x.Value)
		}
		if hd[ingest.HeaderReason] != ingest.ReasonInvalid || hd[ingest.HeaderField] != "timestamp" || hd[ingest.HeaderTopic] != e2e.Topic {
			t.Errorf("dead letter %s: headers %v", d.Value, hd)
		}
		part, _ := strconv.Atoi(hd[ingest.HeaderPartition])
		off, _ := strconv.ParseInt(hd[ingest.HeaderOffset], 10, 64)
		if orig := readAt(t, h.Broker.Addr(), part, off); string(orig) != string(d.Value) {
			t.Errorf("dead letter %s: original at %d/%d is %s", d.Value, part, off, orig)
		}
		seen[string(d.Value)] = true
	}
	if len(seen) != len(refused) {
		t.Errorf("%d distinct dead letters, want %d", len(seen), len(refused))
	}

	// Charged, and archived at the draw time.
	v, err := bal.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if want := credit.Credits(1000 - int64(len(charged))); v.Total != want || v.Unfunded != 0 {
		t.Errorf("balance %s unfunded %s, want %s and 0", v.Total, v.Unfunded, want)
	}
	for _, c := range charged {
		var at time.Time
		var ms uint16
		var funded decimal.Decimal
		err := h.Conn.QueryRow(ctx, "SELECT event_time, event_time_ms, funded_credits FROM rated_usage FINAL WHERE event_id = ?", c.id).Scan(&at, &ms, &funded)
		if err != nil {
			t.Errorf("%s: not archived: %v", c.id, err)
			continue
		}
		want := c.at.Truncate(time.Millisecond)
		if got := at.Add(time.Duration(ms) * time.Millisecond); !got.Equal(want) || !funded.Equal(decimal.NewFromInt(1)) {
			t.Errorf("%s: archived at %s funded %s, want %s funded 1", c.id, got, funded, want)
		}
	}
	var far uint64
	if err := h.Conn.QueryRow(ctx, "SELECT count() FROM rated_usage WHERE event_time >= toDateTime(?) OR event_id LIKE 'refused-%'", monthEnd.Unix()).Scan(&far); err != nil {
		t.Fatal(err)
	}
	if far != 0 {
		t.Errorf("%d rated_usage rows after the month or of refused events", far)
	}

	// The month's invoice adds up: closing = opening + credits in − usage
	// drawn − breakage; and it holds every charged event.
	inv, err := archive.BuildInvoice(ctx, h.Conn, sub, period, archive.InvoiceTerms{CustomerID: "acme", Currency: "USD",
		CreditValue: decimal.NewFromInt(1), CreditCurrency: "AIT"})
	if err != nil {
		t.Fatal(err)
	}
	in := decimal.Zero
	for _, l := range inv.Lines {
		switch l.Kind {
		case archive.LineTopUp, archive.LinePurchasedGrant, archive.LineGrant, archive.LineAdjustment:
			in = in.Add(l.Credits)
		}
	}
	movements := in.Sub(inv.UsageCredits.Sub(inv.UnfundedCredits)).Sub(inv.BreakageCredits)
	if !inv.ClosingBalance.Equal(inv.OpeningBalance.Add(movements)) {
		t.Errorf("invoice %s: closing %s != opening %s + movements %s (in %s, usage %s, unfunded %s, breakage %s)", period,
			inv.ClosingBalance, inv.OpeningBalance, movements, in, inv.UsageCredits, inv.UnfundedCredits, inv.BreakageCredits)
	}
	if !inv.UsageCredits.Equal(decimal.NewFromInt(int64(len(charged)))) {
		t.Errorf("invoice %s: usage %s credits, want %d", period, inv.UsageCredits, len(charged))
	}
}

// readAt is the value of the usage topic's message at partition/offset.
func readAt(t *testing.T, addr string, partition int, offset int64) []byte {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: e2e.Topic, Partition: partition, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("read %d/%d: %v", partition, offset, err)
	}
	return m.Value
}
