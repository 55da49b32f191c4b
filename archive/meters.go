package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// Meter windows.
const (
	WindowNone  = ""
	WindowHour  = "hour"
	WindowDay   = "day"
	WindowMonth = "month"
)

// MeterQuery asks for one meter's value of a subscription over event times
// [From, To), in one window or per hour, day or month (UTC).
type MeterQuery struct {
	Subscription string
	Feature      string
	Aggregation  string // the meter's: COUNT, SUM, UNIQUE_COUNT, MAX, LATEST, AVG
	From, To     time.Time
	Window       string
}

// MeterValue is a meter's value in one window. Value is nil when the
// window has no event (MAX, LATEST and AVG of nothing are undefined).
type MeterValue struct {
	WindowStart time.Time        `json:"window_start"`
	Value       *decimal.Decimal `json:"value"`
	Events      uint64           `json:"events"`
}

// meterExpr is the SQL of each aggregation over rated_usage FINAL. COUNT,
// SUM and UNIQUE_COUNT sum the rated quantities (a UNIQUE_COUNT repeat is
// archived with quantity 0); AVG is sum / count, divided in Go to stay exact.
var meterExpr = map[string]string{
	"COUNT":        "sum(quantity)",
	"SUM":          "sum(quantity)",
	"UNIQUE_COUNT": "sum(quantity)",
	"MAX":          "max(quantity)",
	"LATEST":       "argMax(quantity, toUInt64(event_time) * 1000 + event_time_ms)",
	"AVG":          "sum(quantity)",
}

var windowExpr = map[string]string{
	WindowNone:  "toDateTime(?)",
	WindowHour:  "toStartOfHour(event_time)",
	WindowDay:   "toDateTime(toDate(event_time))",
	WindowMonth: "toDateTime(toStartOfMonth(event_time))",
}

// AvgScale is the decimal places of an AVG meter's value.
const AvgScale = 9

// MeterValues answers q from rated_usage FINAL, oldest window first.
func MeterValues(ctx context.Context, conn driver.Conn, q MeterQuery) ([]MeterValue, error) {
	from, to := q.From.UTC().Truncate(time.Second), q.To.UTC().Truncate(time.Second)
	expr, ok := meterExpr[q.Aggregation]
	win, wok := windowExpr[q.Window]
	switch {
	case q.Subscription == "" || q.Feature == "":
		return nil, fmt.Errorf("%w: subscription and feature are required", ErrInvalidQuery)
	case !ok:
		return nil, fmt.Errorf("%w: aggregation %q", ErrInvalidQuery, q.Aggregation)
	case !wok:
		return nil, fmt.Errorf("%w: window %q, want hour, day or month", ErrInvalidQuery, q.Window)
	case from.IsZero() || to.IsZero() || !from.Before(to):
		return nil, fmt.Errorf("%w: want from < to, got %s .. %s", ErrInvalidQuery, from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.Sub(from) > 366*24*time.Hour:
		return nil, fmt.Errorf("%w: at most 366 days at once", ErrInvalidQuery)
	}
	args := []any{}
	if q.Window == WindowNone {
		args = append(args, from.Unix())
	}
	args = append(args, q.Subscription, q.Feature, from.Unix(), to.Unix())
	rows, err := conn.Query(ctx, `SELECT `+win+` AS w, `+expr+`, count() AS n
		FROM rated_usage FINAL
		WHERE subscription_id = ? AND feature = ? AND event_time >= toDateTime(?) AND event_time < toDateTime(?)
		GROUP BY w ORDER BY w`, args...)
	if err != nil {
		return nil, fmt.Errorf("archive: meter %s of %s: %w", q.Feature, q.Subscription, err)
	}
	defer rows.Close()
	out := []MeterValue{}
	for rows.Next() {
		var v MeterValue
		var x decimal.Decimal
		if err := rows.Scan(&v.WindowStart, &x, &v.Events); err != nil {
			return nil, fmt.Errorf("archive: meter %s of %s: %w", q.Feature, q.Subscription, err)
		}
		if v.Events == 0 { // a constant GROUP BY of no rows may answer one empty row
			continue
		}
		if q.Aggregation == "AVG" {
			x = x.DivRound(decimal.NewFromInt(int64(v.Events)), AvgScale)
		}
		v.WindowStart = v.WindowStart.UTC()
		v.Value = &x
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("archive: meter %s of %s: %w", q.Feature, q.Subscription, err)
	}
	if len(out) == 0 && q.Window == WindowNone {
		v := MeterValue{WindowStart: from}
		if q.Aggregation != "MAX" && q.Aggregation != "LATEST" && q.Aggregation != "AVG" {
			z := decimal.Zero
			v.Value = &z
		}
		out = append(out, v)
	}
	return out, nil
}

// Meter is MeterValues on r's connection.
func (r Reports) Meter(ctx context.Context, q MeterQuery) ([]MeterValue, error) {
	return MeterValues(ctx, r.Conn, q)
}
