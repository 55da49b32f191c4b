package archive

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// Report groupings beyond GroupByFeature and GroupByDay. A dimension is
// grouped as DimPrefix + its key ("dim:model").
const (
	GroupByHour         = "hour"
	GroupByMonth        = "month"
	GroupByCustomer     = "customer"
	GroupBySubscription = "subscription"
	DimPrefix           = "dim:"
)

// Report limits.
const (
	MaxReportGroups   = 8     // groupings in one report
	DefaultReportRows = 1000  // rows of a page when Limit is 0
	MaxReportRows     = 10000 // rows of a page at most
)

// ReportQuery asks for rated usage with event time in [From, To), grouped
// by Groups (in order), filtered by subscriptions, customers, features and
// dimension values, a page of Limit rows after Cursor. Every filter that is
// set must match; several values of one filter are alternatives.
type ReportQuery struct {
	Subscriptions []string
	Customers     []string
	From, To      time.Time
	Groups        []string
	Features      []string
	// Dims maps a dimension key to the values accepted; "" matches events
	// without the dimension.
	Dims   map[string][]string
	Limit  int
	Cursor string // NextCursor of the previous page
}

// ReportRow is one group of a report: the group's values, then the sums.
type ReportRow struct {
	Hour           string            `json:"hour,omitempty"`  // RFC 3339, the hour's start
	Day            string            `json:"day,omitempty"`   // YYYY-MM-DD
	Month          string            `json:"month,omitempty"` // YYYY-MM
	Feature        string            `json:"feature,omitempty"`
	CustomerID     string            `json:"customer_id,omitempty"`
	SubscriptionID string            `json:"subscription_id,omitempty"`
	Dimensions     map[string]string `json:"dimensions,omitempty"` // grouped dimensions, "" when an event lacks one
	// Quantity is in the feature's meter unit: only when the rows are of
	// one feature (grouped by feature, or one feature filtered).
	Quantity        *decimal.Decimal `json:"quantity,omitempty"`
	Credits         decimal.Decimal  `json:"credits"`
	FundedCredits   decimal.Decimal  `json:"funded_credits"`
	UnfundedCredits decimal.Decimal  `json:"unfunded_credits"`
	CreditCurrency  string           `json:"credit_currency"`
	MoneyValue      decimal.Decimal  `json:"money_value"`
	MoneyCurrency   string           `json:"money_currency"`
	Events          uint64           `json:"events"`
}

// UsageReport is a page of a report.
type UsageReport struct {
	Groups     []string    `json:"group_by"`
	Rows       []ReportRow `json:"rows"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// groupExpr is the SQL of a grouping over rated_usage; a dimension's key is
// bound as a parameter.
func groupExpr(g string) (string, []any, bool) {
	switch g {
	case GroupByHour:
		return "toString(toStartOfHour(event_time))", nil, true
	case GroupByDay:
		return "toString(toDate(event_time))", nil, true
	case GroupByMonth:
		return "toString(toStartOfMonth(event_time))", nil, true
	case GroupByFeature:
		return "feature", nil, true
	case GroupByCustomer:
		return "customer_id", nil, true
	case GroupBySubscription:
		return "subscription_id", nil, true
	}
	if key, ok := strings.CutPrefix(g, DimPrefix); ok && key != "" {
		return "dim_values[indexOf(dim_keys, ?)]", []any{key}, true
	}
	return "", nil, false
}

// CheckGroups refuses an unknown, repeated or empty list of groupings.
func CheckGroups(groups []string) error {
	if len(groups) == 0 || len(groups) > MaxReportGroups {
		return fmt.Errorf("%w: group by 1 to %d of hour, day, month, feature, customer, subscription, dim:<key>", ErrInvalidQuery, MaxReportGroups)
	}
	times := 0
	for i, g := range groups {
		if _, _, ok := groupExpr(g); !ok {
			return fmt.Errorf("%w: unknown grouping %q, want hour, day, month, feature, customer, subscription or dim:<key>", ErrInvalidQuery, g)
		}
		if slices.Contains(groups[:i], g) {
			return fmt.Errorf("%w: grouping %q given twice", ErrInvalidQuery, g)
		}
		if g == GroupByHour || g == GroupByDay || g == GroupByMonth {
			times++
		}
	}
	if times > 1 {
		return fmt.Errorf("%w: group by at most one of hour, day and month", ErrInvalidQuery)
	}
	return nil
}

// ErrBadCursor is a cursor that is not a next_cursor of the same query.
var ErrBadCursor = errors.New("cursor is not a next_cursor of this query")

// cursorKey is what a cursor holds: the group values of the last row of
// its page, then its credit and money currencies.
type cursorKey []string

func encodeCursor(k cursorKey) string {
	b, _ := json.Marshal(k)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, n int) (cursorKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var k cursorKey
	if err == nil {
		err = json.Unmarshal(b, &k)
	}
	if err != nil || len(k) != n {
		return nil, fmt.Errorf("%w: %w", ErrInvalidQuery, ErrBadCursor)
	}
	return k, nil
}

// Report answers q from rated_usage FINAL, each rated line counted once.
// Rows are ordered by their group values (then currencies), so pages follow
// each other by key: rows archived meanwhile never shift a later page.
// Each group is also split by credit and money currency, so sums never mix
// currencies.
func Report(ctx context.Context, conn driver.Conn, q ReportQuery) (UsageReport, error) {
	from, to := q.From.UTC().Truncate(time.Second), q.To.UTC().Truncate(time.Second)
	switch {
	case from.IsZero() || to.IsZero() || !from.Before(to):
		return UsageReport{}, fmt.Errorf("%w: want from < to, got %s .. %s", ErrInvalidQuery, from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.Sub(from) > 366*24*time.Hour:
		return UsageReport{}, fmt.Errorf("%w: at most 366 days at once", ErrInvalidQuery)
	case q.Limit < 0 || q.Limit > MaxReportRows:
		return UsageReport{}, fmt.Errorf("%w: limit must be 1 to %d", ErrInvalidQuery, MaxReportRows)
	}
	if err := CheckGroups(q.Groups); err != nil {
		return UsageReport{}, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultReportRows
	}
	var sel, keys []string
	var selArgs []any
	for i, g := range q.Groups {
		expr, a, _ := groupExpr(g)
		sel = append(sel, fmt.Sprintf("%s AS g%d", expr, i))
		keys = append(keys, fmt.Sprintf("g%d", i))
		selArgs = append(selArgs, a...)
	}
	sel = append(sel, "credit_currency AS gc", "money_currency AS gm")
	keys = append(keys, "gc", "gm")
	oneFeature := slices.Contains(q.Groups, GroupByFeature) || len(q.Features) == 1

	where := []string{"event_time >= toDateTime(?)", "event_time < toDateTime(?)"}
	args := []any{from.Unix(), to.Unix()}
	in := func(col string, vs []string) {
		if len(vs) > 0 {
			where = append(where, "has(?, "+col+")")
			args = append(args, vs)
		}
	}
	in("subscription_id", q.Subscriptions)
	in("customer_id", q.Customers)
	in("feature", q.Features)
	dimKeys := make([]string, 0, len(q.Dims))
	for k := range q.Dims {
		dimKeys = append(dimKeys, k)
	}
	slices.Sort(dimKeys)
	for _, k := range dimKeys {
		if len(q.Dims[k]) == 0 {
			continue
		}
		where = append(where, "has(?, dim_values[indexOf(dim_keys, ?)])")
		args = append(args, q.Dims[k], k)
	}
	var having []string
	var havingArgs []any
	if q.Cursor != "" {
		after, err := decodeCursor(q.Cursor, len(keys))
		if err != nil {
			return UsageReport{}, err
		}
		// (k0, k1, …) > (c0, c1, …), spelled out: 18.16 lacks tuple order.
		var or []string
		for i := range keys {
			var and []string
			for j := 0; j < i; j++ {
				and = append(and, keys[j]+" = ?")
				havingArgs = append(havingArgs, after[j])
			}
			and = append(and, keys[i]+" > ?")
			havingArgs = append(havingArgs, after[i])
			or = append(or, "("+strings.Join(and, " AND ")+")")
		}
		having = append(having, strings.Join(or, " OR "))
	}
	sql := "SELECT " + strings.Join(sel, ", ") + ", sum(quantity), " + reportSums + ", count()" +
		" FROM rated_usage FINAL WHERE " + strings.Join(where, " AND ") +
		" GROUP BY " + strings.Join(keys, ", ")
	if len(having) > 0 {
		sql += " HAVING " + strings.Join(having, " AND ")
	}
	sql += " ORDER BY " + strings.Join(keys, ", ") + fmt.Sprintf(" LIMIT %d", limit+1)
	all := append(append(selArgs, args...), havingArgs...)
	rows, err := conn.Query(ctx, sql, all...)
	if err != nil {
		return UsageReport{}, fmt.Errorf("archive: usage report: %w", err)
	}
	defer rows.Close()
	out := UsageReport{Groups: q.Groups, Rows: []ReportRow{}}
	vals := make([]string, len(keys))
	var last cursorKey
	for rows.Next() {
		if len(out.Rows) == limit {
			out.NextCursor = encodeCursor(last)
			break
		}
		var r ReportRow
		var qv decimal.Decimal
		var s usageSum
		dest := make([]any, 0, len(keys)+6)
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		dest = append(dest, &qv, &s.credits, &s.funded, &s.unfunded, &s.money, &r.Events)
		if err := rows.Scan(dest...); err != nil {
			return UsageReport{}, fmt.Errorf("archive: usage report: %w", err)
		}
		r.Credits, r.FundedCredits, r.UnfundedCredits, r.MoneyValue = s.decimals()
		r.CreditCurrency, r.MoneyCurrency = vals[len(vals)-2], vals[len(vals)-1]
		if oneFeature {
			r.Quantity = &qv
		}
		for i, g := range q.Groups {
			setGroup(&r, g, vals[i])
		}
		out.Rows = append(out.Rows, r)
		last = slices.Clone(vals)
	}
	if err := rows.Err(); err != nil {
		return UsageReport{}, fmt.Errorf("archive: usage report: %w", err)
	}
	return out, nil
}

// reportSums are usageSums without the currencies, which are group keys.
var reportSums = sumDecimal("credits_micro") + ", " + sumDecimal("funded_credits_micro") + ", " + sumDecimal("unfunded_credits_micro") +
	", " + sumDecimal("money_value_nano")

func setGroup(r *ReportRow, g, v string) {
	switch g {
	case GroupByHour:
		if t, err := time.Parse(time.DateTime, v); err == nil {
			v = t.UTC().Format(time.RFC3339)
		}
		r.Hour = v
	case GroupByDay:
		r.Day = v
	case GroupByMonth:
		r.Month = strings.TrimSuffix(v, "-01")
	case GroupByFeature:
		r.Feature = v
	case GroupByCustomer:
		r.CustomerID = v
	case GroupBySubscription:
		r.SubscriptionID = v
	default:
		if r.Dimensions == nil {
			r.Dimensions = map[string]string{}
		}
		r.Dimensions[strings.TrimPrefix(g, DimPrefix)] = v
	}
}

// Report is archive.Report on r's connection.
func (r Reports) Report(ctx context.Context, q ReportQuery) (UsageReport, error) {
	return Report(ctx, r.Conn, q)
}
