package balance

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// minorUnits lists the ISO 4217 currencies whose minor unit is not two
// decimal places; every other currency has two.
var minorUnits = map[string]int32{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

// MinorUnits is the number of decimal places of the currency's minor unit
// (USD 2, JPY 0, KWD 3; 2 for a currency not in ISO 4217's exceptions).
func MinorUnits(currency string) int32 {
	if n, ok := minorUnits[strings.ToUpper(currency)]; ok {
		return n
	}
	return 2
}

// Charge is what a purchase of amount credits at value per credit costs:
// rounded once, half up (away from zero), to the currency's minor unit, so
// every recorded charge and every invoice sum is a whole number of cents.
func Charge(amount credit.Amount, value decimal.Decimal, currency string) decimal.Decimal {
	return amount.Decimal().Mul(value).Round(MinorUnits(currency))
}

// PurchaseLimitError is a top-up refused by the month's purchase limit.
type PurchaseLimitError struct {
	Kind     string // "credits" or "charge"
	Period   string // the calendar month, UTC: "2026-11"
	Limit    string // credits, or money in Currency
	Used     string // bought (or pending) this month, same unit
	Currency string // Kind "charge"
	limit    int64  // raw: micro-credits or minor units
	used     int64
}

func (e *PurchaseLimitError) Error() string {
	unit := "credits"
	if e.Kind == "charge" {
		unit = e.Currency
	}
	return fmt.Sprintf("balance: the purchase limit of %s %s per month would be exceeded: %s %s bought in %s (UTC)", e.Limit, unit, e.Used, unit, e.Period)
}

func (e *PurchaseLimitError) Unwrap() error { return ErrPurchaseLimit }

// purchaseLimitError reads the script's "CMPURCHASELIMIT kind|limit|used|period".
func purchaseLimitError(msg string) error {
	p := strings.Split(strings.TrimPrefix(msg, "CMPURCHASELIMIT "), "|")
	if len(p) != 4 {
		return fmt.Errorf("%w: %s", ErrPurchaseLimit, msg)
	}
	e := &PurchaseLimitError{Kind: p[0], Period: p[3]}
	e.limit, _ = strconv.ParseInt(p[1], 10, 64)
	e.used, _ = strconv.ParseInt(p[2], 10, 64)
	e.Limit, e.Used = credit.Amount(e.limit).String(), credit.Amount(e.used).String()
	return e
}

// inCurrency states a charge limit in money.
func (e *PurchaseLimitError) inCurrency(cur string) {
	if e.Kind != "charge" {
		return
	}
	n := MinorUnits(cur)
	e.Currency = cur
	e.Limit = decimal.New(e.limit, -n).StringFixed(n)
	e.Used = decimal.New(e.used, -n).StringFixed(n)
}

// minor is a money amount in the currency's minor units (it has no more
// places: Charge rounded it).
func minor(m decimal.Decimal, cur string) int64 {
	return m.Shift(MinorUnits(cur)).Round(0).IntPart()
}

// period is the calendar month (UTC) purchases count against.
func period(t time.Time) string { return t.UTC().Format("2006-01") }

// topUpTerms is change.lua's top-up argument: the expected credit value,
// the month, the charge in minor units, and 1 for an already reserved
// (confirmed pending) top-up.
func topUpTerms(value string, now time.Time, charge decimal.Decimal, cur string, reserved bool) string {
	r := "0"
	if reserved {
		r = "1"
	}
	return value + "|" + period(now) + "|" + strconv.FormatInt(minor(charge, cur), 10) + "|" + r
}
