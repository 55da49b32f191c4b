package archive

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
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

// ParsePeriod reads a calendar month "2026-11" as [first day, next first day) UTC.
func ParsePeriod(period string) (time.Time, time.Time, error) {
	from, err := time.Parse("2006-01", period)
	if err != nil || from.Format("2006-01") != period {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: period %q, want YYYY-MM", ErrInvalidQuery, period)
	}
	return from, from.AddDate(0, 1, 0), nil
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
	inv := Invoice{SubscriptionID: sub, CustomerID: terms.CustomerID, Period: period, From: from, To: to,
		Currency: terms.Currency, CreditCurrency: terms.CreditCurrency, CreditValue: terms.CreditValue, Lines: []InvoiceLine{}}
	price := terms.CreditValue
	fail := func(what string, err error) (Invoice, error) {
		return Invoice{}, fmt.Errorf("archive: invoice %s %s: %s: %w", sub, period, what, err)
	}

	if err := conn.QueryRow(ctx, `SELECT sumIf(amount, created_at < toDateTime(?)), sumIf(amount, created_at < toDateTime(?))
		FROM credit_ledger FINAL WHERE subscription_id = ? AND created_at < toDateTime(?)`,
		from.Unix(), to.Unix(), sub, to.Unix()).Scan(&inv.OpeningBalance, &inv.ClosingBalance); err != nil {
		return fail("balances", err)
	}

	// Grant types of every grant ever made (usage in the period may draw
	// from older grants), and the period's money-relevant entries.
	types := map[string]string{}
	rows, err := conn.Query(ctx, `SELECT seq, kind, amount, grant_id, grant_type, money_amount, money_currency, reason,
		created_at >= toDateTime(?) AND created_at < toDateTime(?) AS inPeriod
		FROM credit_ledger FINAL WHERE subscription_id = ? AND created_at < toDateTime(?) AND kind IN ('grant', 'topup', 'adjustment', 'expiry')
		ORDER BY seq`, from.Unix(), to.Unix(), sub, to.Unix())
	if err != nil {
		return fail("ledger", err)
	}
	type expiry struct {
		seq    uint64
		grant  string
		amount decimal.Decimal
	}
	var expiries []expiry
	for rows.Next() {
		var seq uint64
		var kind, grant, gtype, cur, reason string
		var amt, money decimal.Decimal
		var in uint8
		if err := rows.Scan(&seq, &kind, &amt, &grant, &gtype, &money, &cur, &reason, &in); err != nil {
			rows.Close()
			return fail("ledger", err)
		}
		switch {
		case kind == KindTopUp && gtype == "":
			gtype = "purchased"
		case kind == KindAdjustment && gtype == "":
			gtype = "adjustment"
		}
		if grant != "" && kind != KindExpiry {
			types[grant] = gtype
		}
		if in == 0 {
			continue
		}
		ref := fmt.Sprintf("ledger#%d", seq)
		switch {
		case kind == KindTopUp:
			if money.IsZero() {
				money = amt.Mul(price)
			}
			inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineTopUp, Description: "Credit top-up", Credits: amt,
				UnitPrice: unitPrice(money, amt), Money: money, Billable: true, Ref: ref})
			inv.TopUps = inv.TopUps.Add(money)
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
		case kind == KindAdjustment:
			inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineAdjustment, Description: "Adjustment: " + reason, Credits: amt,
				UnitPrice: price, Money: amt.Mul(price), Ref: ref})
		case kind == KindExpiry:
			expiries = append(expiries, expiry{seq, grant, amt.Neg()})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("ledger", err)
	}

	usage, err := Usage(ctx, conn, UsageQuery{Subscription: sub, From: from, To: to, GroupBy: GroupByFeature})
	if err != nil {
		return Invoice{}, err
	}
	for _, u := range usage {
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineUsage, Description: "Usage: " + u.Feature, Feature: u.Feature,
			Quantity: u.Quantity, Events: u.Events, Credits: u.Credits, UnitPrice: price, Money: u.MoneyValue})
		inv.UsageCredits = inv.UsageCredits.Add(u.Credits)
		inv.UsageMoney = inv.UsageMoney.Add(u.MoneyValue)
		inv.UnfundedCredits = inv.UnfundedCredits.Add(u.UnfundedCredits)
	}

	// Promotional credits used: what the period's lines drew from promotional grants.
	rows, err = conn.Query(ctx, `SELECT g, sum(a) FROM
		(SELECT grant_ids, grant_amounts FROM rated_usage FINAL
		 WHERE subscription_id = ? AND event_time >= toDateTime(?) AND event_time < toDateTime(?))
		ARRAY JOIN grant_ids AS g, grant_amounts AS a GROUP BY g ORDER BY g`, sub, from.Unix(), to.Unix())
	if err != nil {
		return fail("draws", err)
	}
	for rows.Next() {
		var g string
		var a decimal.Decimal
		if err := rows.Scan(&g, &a); err != nil {
			rows.Close()
			return fail("draws", err)
		}
		if types[g] == "promotional" {
			inv.PromotionalCredits = inv.PromotionalCredits.Add(a)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("draws", err)
	}
	if !inv.PromotionalCredits.IsZero() {
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LinePromotional, Description: "Promotional credits used",
			Credits: inv.PromotionalCredits, UnitPrice: price, Money: inv.PromotionalCredits.Mul(price)})
	}

	sort.Slice(expiries, func(i, j int) bool { return expiries[i].seq < expiries[j].seq })
	for _, e := range expiries {
		t := types[e.grant]
		if t == "" {
			t = "unknown"
		}
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineBreakage, Description: "Expired unused credits (" + t + " grant " + e.grant + ")",
			Credits: e.amount, UnitPrice: price, Money: e.amount.Mul(price), Ref: fmt.Sprintf("ledger#%d", e.seq)})
		inv.BreakageCredits = inv.BreakageCredits.Add(e.amount)
	}

	// Debt open at the end beyond the debt carried in (billed before).
	debt := func(b decimal.Decimal) decimal.Decimal { return decimal.Max(decimal.Zero, b.Neg()) }
	if o := debt(inv.ClosingBalance).Sub(debt(inv.OpeningBalance)); o.IsPositive() {
		inv.OverageCredits = o
		inv.Lines = append(inv.Lines, InvoiceLine{Kind: LineOverage, Description: "Overage: usage beyond prepaid credits, unsettled at period end",
			Credits: inv.OverageCredits, UnitPrice: price, Money: inv.OverageCredits.Mul(price), Billable: true})
	}
	for _, l := range inv.Lines {
		if l.Billable {
			inv.TotalDue = inv.TotalDue.Add(l.Money)
		}
	}
	return inv, nil
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
