package archive

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// InvoiceTerms are the subscription's terms an invoice prices with (from the
// catalog: rating.Terms).
type InvoiceTerms struct {
	CustomerID     string
	Currency       string          // the subscription's money currency
	CreditValue    decimal.Decimal // money per credit (rating.EffectiveCreditValue)
	CreditCurrency string
}

// Invoice line kinds. Billable lines make up TotalDue; the others report
// what happened to credits already paid for.
const (
	LineTopUp          = "topup"           // billable: credits bought by the customer
	LinePurchasedGrant = "purchased_grant" // billable: purchased included credits
	LineOverage        = "overage"         // billable: debt still open at period end
	LineUsage          = "usage"           // credits used per feature and their money value
	LinePromotional    = "promotional_used"
	LineBreakage       = "breakage" // expired, unused credits
	LineGrant          = "grant"    // credits granted free (promotional) or of a type not recorded
	LineAdjustment     = "adjustment"
)

// CarriedOverPrefix starts the reason of a grant carried over from an ended
// subscription (a plan change): its credits were paid for, if at all, on
// the old subscription's invoice, so it is a grant line, never billed.
const CarriedOverPrefix = "carried over from "

// InvoiceLine is one line. Money = Credits × UnitPrice unless a charge was
// recorded at another price (top-ups keep the price they were bought at).
type InvoiceLine struct {
	Kind        string           `json:"kind"`
	Description string           `json:"description"`
	Feature     string           `json:"feature,omitempty"`
	Quantity    *decimal.Decimal `json:"quantity,omitempty"` // usage: meter units
	Events      uint64           `json:"events,omitempty"`
	Credits     decimal.Decimal  `json:"credits"`
	UnitPrice   decimal.Decimal  `json:"unit_price"` // money per credit
	Money       decimal.Decimal  `json:"money"`
	Billable    bool             `json:"billable"`
	Ref         string           `json:"ref,omitempty"` // ledger seq or grant id
}

// Invoice of one subscription for one calendar month (UTC). Amounts are
// exact decimals, JSON strings.
type Invoice struct {
	SubscriptionID string          `json:"subscription_id"`
	CustomerID     string          `json:"customer_id"`
	Period         string          `json:"period"` // YYYY-MM
	From           time.Time       `json:"from"`
	To             time.Time       `json:"to"` // exclusive
	Currency       string          `json:"currency"`
	CreditCurrency string          `json:"credit_currency"`
	CreditValue    decimal.Decimal `json:"credit_value"`
	Lines          []InvoiceLine   `json:"lines"`

	// Ledger balance (sum of entries) before and after the period, credits.
	OpeningBalance decimal.Decimal `json:"opening_balance"`
	ClosingBalance decimal.Decimal `json:"closing_balance"`

	TopUps             decimal.Decimal `json:"topups"`              // money
	PurchasedGrants    decimal.Decimal `json:"purchased_grants"`    // money
	UsageCredits       decimal.Decimal `json:"usage_credits"`       // credits
	UsageMoney         decimal.Decimal `json:"usage_money"`         // money value
	UnfundedCredits    decimal.Decimal `json:"unfunded_credits"`    // usage not drawn from credits
	PromotionalCredits decimal.Decimal `json:"promotional_credits"` // promotional credits used
	BreakageCredits    decimal.Decimal `json:"breakage_credits"`
	OverageCredits     decimal.Decimal `json:"overage_credits"` // debt opened in the period, still open at its end
	TotalDue           decimal.Decimal `json:"total_due"`       // sum of billable lines, money
}

// ErrPeriodOutOfRange: a month outside the archive's DateTime range
// (1970-01 to 2105-12), whose bounds ClickHouse would wrap (1900-01 read
// as a later month, 9999-12 not parsed).
var ErrPeriodOutOfRange = fmt.Errorf("%w: period must be from 1970-01 to 2105-12", ErrInvalidQuery)

// ParsePeriod reads a calendar month "2026-11" as [first day, next first day) UTC.
func ParsePeriod(period string) (time.Time, time.Time, error) {
	from, err := time.Parse("2006-01", period)
	if err != nil || from.Format("2006-01") != period {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: period %q, want YYYY-MM", ErrInvalidQuery, period)
	}
	to := from.AddDate(0, 1, 0)
	if from.Year() < 1970 || to.After(time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w, got %s", ErrPeriodOutOfRange, period)
	}
	return from, to, nil
}

// BuildInvoice assembles the invoice of sub for period from the archive:
// the credit ledger for money in and out, rated usage (through the rollup)
// for usage by feature, and the grants each line drew from for promotional
// credits. Every rated line and ledger entry counts once (FINAL).
//
// Overage to bill is the growth of open debt over the period:
// max(0, −closing) − max(0, −opening), never below zero. Debt settled by a
// top-up in the period is paid by that top-up; debt carried in was billed
// by the previous invoice (record its payment as an adjustment, so a later
// top-up does not settle it a second time).
func BuildInvoice(ctx context.Context, conn driver.Conn, sub, period string, terms InvoiceTerms) (Invoice, error) {
	from, to, err := ParsePeriod(period)
	if err != nil {
		return Invoice{}, err
	}
	if sub == "" {
		return Invoice{}, fmt.Errorf("%w: subscription is required", ErrInvalidQuery)
	}
	b := &invoiceBuilder{conn: conn, sub: sub, period: period, from: from, to: to, price: terms.CreditValue,
		types: map[string]string{},
		inv: Invoice{SubscriptionID: sub, CustomerID: terms.CustomerID, Period: period, From: from, To: to,
			Currency: terms.Currency, CreditCurrency: terms.CreditCurrency, CreditValue: terms.CreditValue, Lines: []InvoiceLine{}}}
	// Line order: the period's ledger entries, usage, promotional credits
	// used, breakage, overage.
	for _, step := range []func(context.Context) error{b.balances, b.ledger, b.usage, b.promotional} {
		if err := step(ctx); err != nil {
			return Invoice{}, err
		}
	}
	b.breakage()
	b.overage()
	for _, l := range b.inv.Lines {
		if l.Billable {
			b.inv.TotalDue = b.inv.TotalDue.Add(l.Money)
		}
	}
	return b.inv, nil
}

// invoiceBuilder is BuildInvoice's state between its queries.
type invoiceBuilder struct {
	conn     driver.Conn
	sub      string
	period   string
	from, to time.Time
	price    decimal.Decimal // money per credit
	inv      Invoice
	types    map[string]string // grant id → grant type, of every grant ever made
	expiries []ledgerExpiry    // the period's expiry entries
}

type ledgerExpiry struct {
	seq    uint64
	grant  string
	amount decimal.Decimal
}

func (b *invoiceBuilder) fail(what string, err error) error {
	return fmt.Errorf("archive: invoice %s %s: %s: %w", b.sub, b.period, what, err)
}

// balances reads the ledger balance before and after the period.
func (b *invoiceBuilder) balances(ctx context.Context) error {
	var opening, closing decimal.Decimal
	if err := b.conn.QueryRow(ctx, `SELECT sumIf(toDecimal128(amount_micro, 0), created_at < toDateTime(?)), `+sumDecimal("amount_micro")+`
		FROM credit_ledger FINAL WHERE subscription_id = ? AND created_at < toDateTime(?)`,
		b.from.Unix(), b.sub, b.to.Unix()).Scan(&opening, &closing); err != nil {
		return b.fail("balances", err)
	}
	b.inv.OpeningBalance, b.inv.ClosingBalance = unitsToDecimal(opening, credit.Scale), unitsToDecimal(closing, credit.Scale)
	return nil
}

// ledger records the grant types of every grant ever made (usage in the
// period may draw from older grants) and adds the period's money-relevant
// entries as lines; expiries wait for breakage.
func (b *invoiceBuilder) ledger(ctx context.Context) error {
	rows, err := b.conn.Query(ctx, `SELECT seq, kind, amount_micro, grant_id, grant_type, money_amount, money_currency, reason,
		created_at >= toDateTime(?) AND created_at < toDateTime(?) AS inPeriod
		FROM credit_ledger FINAL WHERE subscription_id = ? AND created_at < toDateTime(?) AND kind IN ('grant', 'topup', 'adjustment', 'expiry')
		ORDER BY seq`, b.from.Unix(), b.to.Unix(), b.sub, b.to.Unix())
	if err != nil {
		return b.fail("ledger", err)
	}
	for rows.Next() {
		var seq uint64
		var kind, grant, gtype, cur, reason string
		var amt credit.Amount
		var money decimal.Decimal
		var in uint8
		if err := rows.Scan(&seq, &kind, (*int64)(&amt), &grant, &gtype, &money, &cur, &reason, &in); err != nil {
			rows.Close()
			return b.fail("ledger", err)
		}
		switch {
		case kind == KindTopUp && gtype == "":
			gtype = "purchased"
		case kind == KindAdjustment && gtype == "":
			gtype = "adjustment"
		}
		if grant != "" && kind != KindExpiry {
			b.types[grant] = gtype
		}
		if in == 0 {
			continue
		}
		b.ledgerLine(seq, kind, grant, gtype, reason, amt.Decimal(), money, cur != "")
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return b.fail("ledger", err)
	}
	return nil
}

// ledgerLine adds one ledger entry of the period. charged: the top-up
// recorded its charge (with a currency), which is its money even when it
// rounded to 0.00; else amount × credit value.
func (b *invoiceBuilder) ledgerLine(seq uint64, kind, grant, gtype, reason string, amt, money decimal.Decimal, charged bool) {
	inv, price := &b.inv, b.price
	ref := fmt.Sprintf("ledger#%d", seq)
	switch {
	case kind == KindTopUp:
		if money.IsZero() && !charged {
			money = amt.Mul(price)
		}
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineTopUp, Description: "Credit top-up", Credits: amt,
			UnitPrice: unitPrice(money, amt), Money: money, Billable: true, Ref: ref})
		inv.TopUps = inv.TopUps.Add(money)
	case kind == KindGrant && strings.HasPrefix(reason, CarriedOverPrefix):
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineGrant, Description: "Credits (" + gtype + ") " + reason, Credits: amt, UnitPrice: price,
			Money: amt.Mul(price), Ref: ref})
	case kind == KindGrant && gtype == "purchased":
		if money.IsZero() {
			money = amt.Mul(price)
		}
		d := "Purchased credits"
		if reason != "" {
			d += ": " + reason
		}
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LinePurchasedGrant, Description: d, Credits: amt,
			UnitPrice: unitPrice(money, amt), Money: money, Billable: true, Ref: ref})
		inv.PurchasedGrants = inv.PurchasedGrants.Add(money)
	case kind == KindGrant:
		d := "Credits granted (" + gtype + ")"
		if gtype == "" {
			d = "Credits granted (type not recorded)"
		}
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineGrant, Description: d, Credits: amt, UnitPrice: price,
			Money: amt.Mul(price), Ref: ref})
	case kind == KindAdjustment && money.IsNegative():
		// a refund (purchased credits of an ended subscription): billed, as a credit
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineAdjustment, Description: "Refund: " + reason, Credits: amt,
			UnitPrice: unitPrice(money, amt), Money: money, Billable: true, Ref: ref})
	case kind == KindAdjustment:
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineAdjustment, Description: "Adjustment: " + reason, Credits: amt,
			UnitPrice: price, Money: amt.Mul(price), Ref: ref})
	case kind == KindExpiry:
		b.expiries = append(b.expiries, ledgerExpiry{seq, grant, amt.Neg()})
	}
}

// usage adds the period's rated usage by feature (through the rollup).
func (b *invoiceBuilder) usage(ctx context.Context) error {
	usage, err := Usage(ctx, b.conn, UsageQuery{Subscription: b.sub, From: b.from, To: b.to, GroupBy: GroupByFeature})
	if err != nil {
		return err
	}
	inv := &b.inv
	for _, u := range usage {
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineUsage, Description: "Usage: " + u.Feature, Feature: u.Feature,
			Quantity: u.Quantity, Events: u.Events, Credits: u.Credits, UnitPrice: b.price, Money: u.MoneyValue})
		inv.UsageCredits = inv.UsageCredits.Add(u.Credits)
		inv.UsageMoney = inv.UsageMoney.Add(u.MoneyValue)
		inv.UnfundedCredits = inv.UnfundedCredits.Add(u.UnfundedCredits)
	}
	return nil
}

// promotional adds the promotional credits used: what the period's lines
// drew from promotional grants.
func (b *invoiceBuilder) promotional(ctx context.Context) error {
	inv := &b.inv
	rows, err := b.conn.Query(ctx, `SELECT g, `+sumDecimal("a")+` FROM
		(SELECT grant_ids, grant_amounts_micro FROM rated_usage FINAL
		 WHERE subscription_id = ? AND event_time >= toDateTime(?) AND event_time < toDateTime(?))
		ARRAY JOIN grant_ids AS g, grant_amounts_micro AS a GROUP BY g ORDER BY g`, b.sub, b.from.Unix(), b.to.Unix())
	if err != nil {
		return b.fail("draws", err)
	}
	for rows.Next() {
		var g string
		var a decimal.Decimal
		if err := rows.Scan(&g, &a); err != nil {
			rows.Close()
			return b.fail("draws", err)
		}
		if b.types[g] == "promotional" {
			inv.PromotionalCredits = inv.PromotionalCredits.Add(unitsToDecimal(a, credit.Scale))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return b.fail("draws", err)
	}
	if !inv.PromotionalCredits.IsZero() {
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LinePromotional, Description: "Promotional credits used",
			Credits: inv.PromotionalCredits, UnitPrice: b.price, Money: inv.PromotionalCredits.Mul(b.price)})
	}
	return nil
}

// breakage adds the period's expired credits, in ledger order.
func (b *invoiceBuilder) breakage() {
	sort.Slice(b.expiries, func(i, j int) bool { return b.expiries[i].seq < b.expiries[j].seq })
	for _, e := range b.expiries {
		t := b.types[e.grant]
		if t == "" {
			t = "unknown"
		}
		b.inv.Lines = append(b.inv.Lines, InvoiceLine{Kind: LineBreakage, Description: "Expired unused credits (" + t + " grant " + e.grant + ")",
			Credits: e.amount, UnitPrice: b.price, Money: e.amount.Mul(b.price), Ref: fmt.Sprintf("ledger#%d", e.seq)})
		b.inv.BreakageCredits = b.inv.BreakageCredits.Add(e.amount)
	}
}

// overage adds the debt open at the end beyond the debt carried in (billed
// before).
func (b *invoiceBuilder) overage() {
	inv := &b.inv
	debt := func(b decimal.Decimal) decimal.Decimal { return decimal.Max(decimal.Zero, b.Neg()) }
	if o := debt(inv.ClosingBalance).Sub(debt(inv.OpeningBalance)); o.IsPositive() {
		inv.OverageCredits = o
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineOverage, Description: "Overage: usage beyond prepaid credits, unsettled at period end",
			Credits: inv.OverageCredits, UnitPrice: b.price, Money: inv.OverageCredits.Mul(b.price), Billable: true})
	}
}

func unitPrice(money, credits decimal.Decimal) decimal.Decimal {
	if credits.IsZero() {
		return decimal.Zero
	}
	return money.DivRound(credits, 9)
}

// WriteJSON writes the invoice as indented JSON.
func (inv Invoice) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(inv)
}

// WriteCSV writes one row per line, then the totals as rows of kind "total_*".
func (inv Invoice) WriteCSV(w io.Writer) error {
	c := csv.NewWriter(w)
	_ = c.Write([]string{"subscription_id", "period", "kind", "description", "feature", "quantity", "events",
		"credits", "credit_currency", "unit_price", "money", "currency", "billable", "ref"})
	row := func(kind, desc, feature, qty, events string, credits, unit, money decimal.Decimal, billable bool, ref string) {
		_ = c.Write([]string{inv.SubscriptionID, inv.Period, kind, desc, feature, qty, events, credits.String(),
			inv.CreditCurrency, unit.String(), money.String(), inv.Currency, fmt.Sprint(billable), ref})
	}
	for _, l := range inv.Lines {
		q, n := "", ""
		if l.Quantity != nil {
			q = l.Quantity.String()
		}
		if l.Events > 0 {
			n = fmt.Sprint(l.Events)
		}
		row(l.Kind, l.Description, l.Feature, q, n, l.Credits, l.UnitPrice, l.Money, l.Billable, l.Ref)
	}
	z := decimal.Zero
	row("total_usage", "Usage total", "", "", "", inv.UsageCredits, inv.CreditValue, inv.UsageMoney, false, "")
	row("opening_balance", "Credit balance at period start", "", "", "", inv.OpeningBalance, z, z, false, "")
	row("closing_balance", "Credit balance at period end", "", "", "", inv.ClosingBalance, z, z, false, "")
	row("total_due", "Total due", "", "", "", z, z, inv.TotalDue, true, "")
	c.Flush()
	return c.Error()
}
