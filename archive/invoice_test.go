package archive_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// clock is a settable time source for the balance store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// scenario drives a subscription through a month on real Redis and archives
// what the engine would: every rated line and every ledger entry.
type scenario struct {
	t     *testing.T
	store *balance.Store
	clk   *clock
	w     *archive.Writer
	conn  driver.Conn
	sub   string
	rated []archive.RatedRow
	n     int
}

var creditValue = decimal.RequireFromString("0.04")

func newScenario(t *testing.T, sub string) (*scenario, *archive.Writer) {
	t.Helper()
	conn, w := migrated(t)
	clk := &clock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}
	store, err := balance.New(testenv.Redis(t), balance.Options{Prefix: testenv.Prefix(t), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{t: t, store: store, clk: clk, w: w, conn: conn, sub: sub}
	if _, err := store.OpenAccount(context.Background(), balance.AccountSpec{Subscription: sub, Customer: "cust-" + sub,
		Policy: balance.Overage, Currency: "USD", CreditValue: creditValue}); err != nil {
		t.Fatal(err)
	}
	return s, w
}

func (s *scenario) grant(at time.Time, typ balance.GrantType, credits int64, expires time.Time) {
	s.t.Helper()
	s.clk.Set(at)
	req := balance.GrantRequest{Key: fmt.Sprintf("g-%s-%d", typ, credits), Subscription: s.sub,
		Type: typ, Amount: credit.Credits(credits), ExpiresAt: expires, Reason: string(typ) + " credits"}
	if typ == balance.Purchased {
		req.CostBasis, req.Charge, req.Currency = creditValue, req.Amount.Decimal().Mul(creditValue), "USD"
	}
	if _, err := s.store.Grant(context.Background(), req); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scenario) topUp(at time.Time, credits int64) decimal.Decimal {
	s.t.Helper()
	s.clk.Set(at)
	res, err := s.store.TopUp(context.Background(), balance.TopUpRequest{Key: fmt.Sprintf("t-%d", at.Unix()), Subscription: s.sub, Amount: credit.Credits(credits)})
	if err != nil {
		s.t.Fatal(err)
	}
	return res.Charge
}

// use applies events of 10 credits each at at, one Apply call, and keeps
// their rated rows as the engine builds them (one line per event).
func (s *scenario) use(at time.Time, events int) {
	s.t.Helper()
	s.clk.Set(at)
	b := balance.Batch{Subscription: s.sub}
	for i := 0; i < events; i++ {
		s.n++
		b.Lines = append(b.Lines, balance.Line{EventID: fmt.Sprintf("ev-%d", s.n), Time: at.Add(time.Duration(i) * time.Second), Credits: credit.Credits(10)})
	}
	res, err := s.store.Apply(context.Background(), []balance.Batch{b})
	if err != nil {
		s.t.Fatal(err)
	}
	for i, lr := range res[0].Lines {
		l := b.Lines[i]
		f := "ai-agent-email"
		if s.n%2 == 0 {
			f = "llm-tokens"
		}
		row := archive.RatedRow{EventID: l.EventID, CustomerID: "cust-" + s.sub, SubscriptionID: s.sub, Feature: f, EventName: f,
			Quantity: decimal.NewFromInt(1), Credits: l.Credits, CreditCurrency: "AIT", MoneyValue: l.Credits.Decimal().Mul(creditValue),
			MoneyCurrency: "USD", EventTime: l.Time, RatedAt: at, Status: archive.StatusApplied}
		for _, d := range lr.Draws {
			row.GrantIDs = append(row.GrantIDs, d.Grant)
			row.GrantAmounts = append(row.GrantAmounts, d.Amount)
			row.Funded += d.Amount
		}
		if short := lr.Overage + lr.Unfunded; short > 0 {
			row.Unfunded, row.Status = short, archive.StatusOverage
		}
		s.rated = append(s.rated, row)
	}
}

// archiveAll writes every Redis ledger entry and rated row, some twice.
func (s *scenario) archiveAll() []balance.Entry {
	s.t.Helper()
	ctx := context.Background()
	entries, err := s.store.Ledger(ctx, s.sub, 1, 10000)
	if err != nil {
		s.t.Fatal(err)
	}
	var rows []archive.LedgerRow
	for _, e := range entries {
		rows = append(rows, accounts.LedgerRow(s.sub, "cust-"+s.sub, e))
	}
	for _, batch := range [][]archive.LedgerRow{rows, rows[2:5]} {
		if err := s.w.WriteLedger(ctx, batch); err != nil {
			s.t.Fatal(err)
		}
	}
	for _, batch := range [][]archive.RatedRow{s.rated, s.rated[20:60]} {
		if err := s.w.WriteUsage(ctx, batch); err != nil {
			s.t.Fatal(err)
		}
	}
	return entries
}

func day(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }

// The November invoice, built from the archive, against figures taken from
// the Redis ledger and against the hand-computed story: 1000 purchased and
// 200 promotional (expiring 11-10) credits; 150 used by 11-09 (promotional
// first: it expires sooner); 50 promotional expire; 1100 used by 11-14 (100
// into overage); a 500 top-up on 11-15 settles the debt; 600 used on 11-20
// (200 overage open at month end); December usage must not count.
func TestInvoiceMatchesRedisLedger(t *testing.T) {
	s, _ := newScenario(t, "sub-inv")
	ctx := context.Background()
	s.grant(day(1, 9), balance.Purchased, 1000, time.Time{})
	s.grant(day(1, 9), balance.Promotional, 200, day(10, 0))
	s.use(day(3, 12), 15)
	for d := 11; d <= 14; d++ {
		s.use(day(d, 8), 25)
		s.use(day(d, 16), 2)
	}
	s.use(day(14, 20), 2)
	charge := s.topUp(day(15, 9), 500)
	s.use(day(20, 11), 60)
	novEnd, err := s.store.Balance(ctx, s.sub)
	if err != nil {
		t.Fatal(err)
	}
	s.use(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC), 5)
	entries := s.archiveAll()

	// The Redis side: November entries only.
	var redisTopUps, redisBreakage, redisUsage, redisClosing decimal.Decimal
	for _, e := range entries {
		if e.Time.Month() != time.November {
			continue
		}
		redisClosing = e.Balance.Decimal()
		switch e.Kind {
		case "topup":
			redisTopUps = redisTopUps.Add(decimal.RequireFromString(e.Fields["charge"]))
		case "expiry":
			redisBreakage = redisBreakage.Sub(e.Amount.Decimal())
		case "usage":
			redisUsage = redisUsage.Sub(e.Amount.Decimal()).Add(e.Unfunded.Decimal())
		}
	}

	inv, err := archive.BuildInvoice(ctx, s.conn, s.sub, "2026-11", archive.InvoiceTerms{CustomerID: "cust-sub-inv", Currency: "USD", CreditValue: creditValue, CreditCurrency: "AIT"})
	if err != nil {
		t.Fatal(err)
	}
	d := decimal.RequireFromString
	for _, c := range []struct {
		name      string
		got, want decimal.Decimal
		redis     *decimal.Decimal
	}{
		{"closing balance", inv.ClosingBalance, d("-200"), &redisClosing},
		{"redis total at month end", novEnd.Total.Decimal(), d("-200"), nil},
		{"opening balance", inv.OpeningBalance, d("0"), nil},
		{"top-ups", inv.TopUps, d("20"), &redisTopUps},
		{"top-up charge", charge, d("20"), nil},
		{"purchased grants", inv.PurchasedGrants, d("40"), nil},
		{"usage credits", inv.UsageCredits, d("1850"), &redisUsage},
		{"usage money", inv.UsageMoney, d("74"), nil},
		{"promotional used", inv.PromotionalCredits, d("150"), nil},
		{"breakage", inv.BreakageCredits, d("50"), &redisBreakage},
		{"overage", inv.OverageCredits, d("200"), nil},
		{"total due", inv.TotalDue, d("68"), nil}, // 20 top-up + 40 purchased + 8 overage
	} {
		if !c.got.Equal(c.want) {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
		if c.redis != nil && !c.redis.Equal(c.want) {
			t.Errorf("%s from the Redis ledger = %s, want %s", c.name, c.redis, c.want)
		}
	}
	kinds := map[string]int{}
	for _, l := range inv.Lines {
		kinds[l.Kind]++
	}
	want := map[string]int{archive.LineTopUp: 1, archive.LinePurchasedGrant: 1, archive.LineUsage: 2,
		archive.LinePromotional: 1, archive.LineBreakage: 1, archive.LineOverage: 1, archive.LineGrant: 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("line kinds %v, want %v", kinds, want)
	}

	var buf bytes.Buffer
	if err := inv.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back archive.Invoice
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !back.TotalDue.Equal(d("68")) || len(back.Lines) != len(inv.Lines) || !bytes.Contains(buf.Bytes(), []byte(`"total_due": "68"`)) {
		t.Errorf("JSON round trip: total %s, %d lines\n%s", back.TotalDue, len(back.Lines), buf.String())
	}
	buf.Reset()
	if err := inv.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if len(recs) != 1+len(inv.Lines)+4 || last[2] != "total_due" || last[10] != "68" {
		t.Errorf("CSV: %d records, last %v", len(recs), last)
	}

	dec, err := archive.BuildInvoice(ctx, s.conn, s.sub, "2026-12", archive.InvoiceTerms{Currency: "USD", CreditValue: creditValue})
	if err != nil {
		t.Fatal(err)
	}
	if !dec.OpeningBalance.Equal(d("-200")) || !dec.UsageCredits.Equal(d("50")) || !dec.TotalDue.Equal(d("2")) {
		t.Errorf("December: opening %s, usage %s, due %s; want -200, 50, 2 (only the new 50 of debt)", dec.OpeningBalance, dec.UsageCredits, dec.TotalDue)
	}
	if _, err := archive.BuildInvoice(ctx, s.conn, s.sub, "2026-13", archive.InvoiceTerms{}); err == nil {
		t.Error("period 2026-13: want an error")
	}
}

// A top-up whose charge rounds to 0.00 (0.1 AIT at 0.04 USD) is invoiced
// at its recorded charge, so the invoice's top-ups add up in cents.
func TestInvoiceTopUpsAtRecordedChargeInCents(t *testing.T) {
	s, _ := newScenario(t, "sub-cents")
	ctx := context.Background()
	for i, amt := range []string{"300.000001", "0.1", "0.125"} {
		s.clk.Set(day(3, 10+i))
		if _, err := s.store.TopUp(ctx, balance.TopUpRequest{Key: fmt.Sprintf("c-%d", i), Subscription: s.sub, Amount: credit.MustParse(amt)}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := s.store.Ledger(ctx, s.sub, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var rows []archive.LedgerRow
	for _, e := range entries {
		rows = append(rows, accounts.LedgerRow(s.sub, "cust-"+s.sub, e))
	}
	if err := s.w.WriteLedger(ctx, rows); err != nil {
		t.Fatal(err)
	}
	inv, err := archive.BuildInvoice(ctx, s.conn, s.sub, "2026-11", archive.InvoiceTerms{Currency: "USD", CreditValue: creditValue})
	if err != nil {
		t.Fatal(err)
	}
	var money []string
	for _, l := range inv.Lines {
		if l.Kind == archive.LineTopUp {
			money = append(money, l.Money.StringFixed(2)+"="+l.Money.String())
		}
	}
	if fmt.Sprint(money) != "[12.00=12 0.00=0 0.01=0.01]" || !inv.TopUps.Equal(decimal.RequireFromString("12.01")) {
		t.Fatalf("top-up lines %v, total %s; want the recorded charges 12.00, 0.00, 0.01 = 12.01", money, inv.TopUps)
	}
}
