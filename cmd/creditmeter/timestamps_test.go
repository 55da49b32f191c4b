package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
)

// Issue 13 item 2 through a real broker and the serve binary, with the
// issue's own timestamps as a producer writes them: far-future and pre-1970
// stamps are dead-lettered invalid/timestamp with their original position;
// an event a little ahead is charged and archived at the time its credits
// were drawn (not its stamp); the month's invoice adds up. Restarted with
// --max-future-skew 1h, an event 30 minutes ahead is charged and one 2 hours
// ahead is still refused.
func TestServeFutureTimestamps(t *testing.T) {
	h := e2e.New(t, 2)
	ctx := t.Context()
	sub, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "ts", Plan: seed.PlanUnfunded, Included: "100", GrantType: "purchased"})
	if err != nil {
		t.Fatal(err)
	}
	stamp := func(d time.Duration) string { return time.Now().UTC().Add(d).Format(time.RFC3339Nano) }
	produce := func(evs map[string]string) {
		t.Helper()
		var msgs []kafka.Message
		for id, ts := range evs {
			v := fmt.Sprintf(`{"id":%q,"customer_id":"ts","event_name":"email.sent","timestamp":%q}`, id, ts)
			msgs = append(msgs, kafka.Message{Key: []byte("ts"), Value: []byte(v)})
		}
		h.Produce(msgs)
	}
	refused := map[string]string{
		"far-2200": "2200-01-01T00:00:00Z", "far-9999": "9999-12-31T23:59:59.999Z", "far-2106": "2106-02-07T06:28:16Z",
		"far-1969": "1969-12-31T23:59:59Z", "ahead-1d": stamp(24 * time.Hour), "ahead-6m": stamp(6 * time.Minute),
	}
	produce(refused)
	began := time.Now()
	produce(map[string]string{"ahead-2m": stamp(2 * time.Minute), "now": stamp(0)})

	httpAddr := "127.0.0.1:" + freePort(t)
	p := startServeAt(t, h, "timestamps", httpAddr)
	p.waitDone(h, "timestamps", time.Minute)
	p.stop()
	drawn := time.Now()

	// One dead letter each: invalid, field timestamp, the original position.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{h.Broker.Addr()}, Topic: e2e.DLQTopic, GroupID: "dlq-timestamps",
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	readDLQ := func(n int) map[string]map[string]string {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		got := map[string]map[string]string{}
		for range n {
			m, err := r.ReadMessage(rctx)
			if err != nil {
				t.Fatalf("dead letters: %v (have %v)", err, got)
			}
			var ev struct{ ID string }
			_ = json.Unmarshal(m.Value, &ev)
			hd := map[string]string{}
			for _, x := range m.Headers {
				hd[x.Key] = string(x.Value)
			}
			got[ev.ID] = hd
		}
		return got
	}
	for id, hd := range readDLQ(len(refused)) {
		if _, ok := refused[id]; !ok || hd[ingest.HeaderReason] != ingest.ReasonInvalid || hd[ingest.HeaderField] != "timestamp" ||
			hd[ingest.HeaderTopic] != e2e.Topic || hd[ingest.HeaderPartition] == "" || hd[ingest.HeaderOffset] == "" {
			t.Errorf("dead letter %q: headers %v", id, hd)
		}
	}

	// Charged, and archived at the draw time: between producing and the end.
	archivedAt := func(id string) time.Time {
		t.Helper()
		var sec, ms uint64
		var funded decimal.Decimal
		err := h.Conn.QueryRow(ctx, "SELECT toUInt64(toUnixTimestamp(event_time)), toUInt64(event_time_ms), funded_credits FROM rated_usage FINAL WHERE subscription_id = ? AND event_id = ?",
			sub, id).Scan(&sec, &ms, &funded)
		if err != nil {
			t.Fatalf("%s: not archived: %v", id, err)
		}
		if !funded.Equal(decimal.NewFromInt(1)) {
			t.Errorf("%s: funded %s, want 1", id, funded)
		}
		return time.Unix(int64(sec), int64(ms)*int64(time.Millisecond))
	}
	if at := archivedAt("ahead-2m"); at.Before(began.Truncate(time.Millisecond)) || at.After(drawn) {
		t.Errorf("ahead-2m archived at %s, want its draw time, between %s and %s", at.UTC(), began.UTC(), drawn.UTC())
	}
	archivedAt("now")
	var far uint64
	if err := h.Conn.QueryRow(ctx, "SELECT count() FROM rated_usage WHERE event_time > toDateTime(?) OR event_id IN ('far-2200','far-9999','far-2106','far-1969','ahead-1d','ahead-6m')",
		drawn.Add(time.Minute).Unix()).Scan(&far); err != nil || far != 0 {
		t.Errorf("%d rows ahead of now or of refused events (%v)", far, err)
	}

	// The skew is the flag's.
	produce(map[string]string{"ahead-30m": stamp(30 * time.Minute), "ahead-2h": stamp(2 * time.Hour)})
	began = time.Now()
	p = startServeAt(t, h, "timestamps", httpAddr, "--max-future-skew", "1h")
	p.waitDone(h, "timestamps", time.Minute)
	p.stop()
	drawn = time.Now()
	if hd := readDLQ(1); hd["ahead-2h"] == nil || hd["ahead-2h"][ingest.HeaderField] != "timestamp" {
		t.Errorf("with --max-future-skew 1h: dead letters %v, want ahead-2h's", hd)
	}
	if at := archivedAt("ahead-30m"); at.Before(began.Truncate(time.Millisecond)) || at.After(drawn) {
		t.Errorf("ahead-30m archived at %s, want its draw time, between %s and %s", at.UTC(), began.UTC(), drawn.UTC())
	}

	// Every invoice period adds up: closing = opening + credits in − usage drawn − breakage.
	for _, period := range []string{time.Now().UTC().Format("2006-01"), time.Now().UTC().Add(time.Hour).Format("2006-01")} {
		inv, err := archive.BuildInvoice(ctx, h.Conn, sub, period, archive.InvoiceTerms{CustomerID: "ts", Currency: "USD",
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
		moved := in.Sub(inv.UsageCredits.Sub(inv.UnfundedCredits)).Sub(inv.BreakageCredits)
		if !inv.ClosingBalance.Equal(inv.OpeningBalance.Add(moved)) {
			t.Errorf("invoice %s: closing %s != opening %s + %s", period, inv.ClosingBalance, inv.OpeningBalance, moved)
		}
	}
	if v, err := h.Balances.Balance(ctx, sub); err != nil || v.Total != 97_000_000 {
		t.Errorf("balance %v (%v), want 97 credits", v.Total, err)
	}
}
