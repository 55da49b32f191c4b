package archive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// ErrInvalidQuery is returned for a query that cannot be answered as asked
// (the API maps it to 400).
var ErrInvalidQuery = errors.New("archive: invalid query")

// Usage groupings.
const (
	GroupByFeature = "feature"
	GroupByDay     = "day"
)

// UsageQuery asks for a subscription's rated usage with event time in
// [From, To), grouped by feature or by UTC day. Times are taken to the
// second.
type UsageQuery struct {
	Subscription string
	From, To     time.Time
	GroupBy      string // GroupByFeature or GroupByDay
}

// UsageRow is one group of rated usage. Amounts are exact decimals, encoded
// as JSON strings.
type UsageRow struct {
	Day     string `json:"day,omitempty"`     // YYYY-MM-DD, group_by=day
	Feature string `json:"feature,omitempty"` // group_by=feature
	// Quantity is in the feature's meter unit; only when grouped by feature,
	// since units of different features do not add.
	Quantity        *decimal.Decimal `json:"quantity,omitempty"`
	Credits         decimal.Decimal  `json:"credits"`
	FundedCredits   decimal.Decimal  `json:"funded_credits"`
	UnfundedCredits decimal.Decimal  `json:"unfunded_credits"`
	CreditCurrency  string           `json:"credit_currency"`
	MoneyValue      decimal.Decimal  `json:"money_value"`
	MoneyCurrency   string           `json:"money_currency"`
	// Events is the number of rated lines: an event rated for two features
	// counts once for each.
	Events uint64 `json:"events"`
}

// Usage answers q from the archive, each rated line counted once. Whole UTC
// days are read from the daily rollup (refreshed first, so it is exact and
// current); other bounds from rated_usage FINAL.
func Usage(ctx context.Context, conn driver.Conn, q UsageQuery) ([]UsageRow, error) {
	from, to := q.From.UTC().Truncate(time.Second), q.To.UTC().Truncate(time.Second)
	switch {
	case q.Subscription == "":
		return nil, fmt.Errorf("%w: subscription is required", ErrInvalidQuery)
	case from.IsZero() || to.IsZero() || !from.Before(to):
		return nil, fmt.Errorf("%w: want from < to, got %s .. %s", ErrInvalidQuery, from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.Sub(from) > 366*24*time.Hour:
		return nil, fmt.Errorf("%w: at most 366 days at once", ErrInvalidQuery)
	case q.GroupBy != GroupByFeature && q.GroupBy != GroupByDay:
		return nil, fmt.Errorf("%w: group_by %q, want feature or day", ErrInvalidQuery, q.GroupBy)
	}
	group := "feature"
	if q.GroupBy == GroupByDay {
		group = "toString(day)"
	}
	var sql string
	var args []any
	if isMidnight(from) && isMidnight(to) {
		if _, err := RefreshRollup(ctx, conn, RollupScope{Subscription: q.Subscription, From: from, To: to}); err != nil {
			return nil, err
		}
		sql = `SELECT ` + group + ` AS g, sum(quantity), ` + usageSums + `, sum(events) AS n
			FROM usage_daily FINAL
			WHERE subscription_id = ? AND day >= toDate(?) AND day < toDate(?)
			GROUP BY g HAVING n > 0 ORDER BY g`
		args = []any{q.Subscription, from.Format(time.DateOnly), to.Format(time.DateOnly)}
	} else {
		if q.GroupBy == GroupByDay {
			group = "toString(toDate(event_time))"
		}
		sql = `SELECT ` + group + ` AS g, sum(quantity), ` + usageSums + `, count() AS n
			FROM rated_usage FINAL
			WHERE subscription_id = ? AND event_time >= toDateTime(?) AND event_time < toDateTime(?)
			GROUP BY g ORDER BY g`
		args = []any{q.Subscription, from.Unix(), to.Unix()}
	}
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("archive: usage of %s: %w", q.Subscription, err)
	}
	defer rows.Close()
	out := []UsageRow{}
	for rows.Next() {
		var r UsageRow
		var g string
		var qty decimal.Decimal
		var s usageSum
		if err := rows.Scan(&g, &qty, &s.credits, &s.funded, &s.unfunded, &r.CreditCurrency,
			&s.money, &r.MoneyCurrency, &r.Events); err != nil {
			return nil, fmt.Errorf("archive: usage of %s: %w", q.Subscription, err)
		}
		r.Credits, r.FundedCredits, r.UnfundedCredits, r.MoneyValue = s.decimals()
		if q.GroupBy == GroupByDay {
			r.Day = g
		} else {
			r.Feature, r.Quantity = g, &qty
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("archive: usage of %s: %w", q.Subscription, err)
	}
	return out, nil
}

// usageSums are the sums of credits and money of rated lines (rated_usage
// or usage_daily), as Decimal(38, 0) of units: an Int64 sum would wrap.
var usageSums = sumDecimal("credits_micro") + ", " + sumDecimal("funded_credits_micro") + ", " + sumDecimal("unfunded_credits_micro") +
	", any(credit_currency), " + sumDecimal("money_value_nano") + ", any(money_currency)"

// usageSum is a row of usageSums: micro-credits and nano-units of money.
type usageSum struct{ credits, funded, unfunded, money decimal.Decimal }

func (s usageSum) decimals() (credits, funded, unfunded, money decimal.Decimal) {
	return unitsToDecimal(s.credits, credit.Scale), unitsToDecimal(s.funded, credit.Scale), unitsToDecimal(s.unfunded, credit.Scale),
		unitsToDecimal(s.money, MoneyScale)
}

// ParseUsageQuery reads the API's parameters: from and to as RFC 3339 times
// or YYYY-MM-DD dates (UTC midnight); group_by feature (default) or day.
func ParseUsageQuery(sub, from, to, groupBy string) (UsageQuery, error) {
	q := UsageQuery{Subscription: sub, GroupBy: groupBy}
	if q.GroupBy == "" {
		q.GroupBy = GroupByFeature
	}
	var err error
	if q.From, err = parseTime(from); err != nil {
		return q, fmt.Errorf("%w: from: %v", ErrInvalidQuery, err)
	}
	if q.To, err = parseTime(to); err != nil {
		return q, fmt.Errorf("%w: to: %v", ErrInvalidQuery, err)
	}
	return q, nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither YYYY-MM-DD nor an RFC 3339 time", s)
	}
	return t.UTC(), nil
}

func isMidnight(t time.Time) bool { return t.Equal(t.Truncate(24 * time.Hour)) }
