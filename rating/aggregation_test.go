package rating

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
)

// aggCatalog is the seed plus a UNIQUE_COUNT meter of active users (2 AIT
// each), a MAX and an AVG reporting meter and filtered COUNT meters.
func aggCatalog(t testing.TB) (*Catalog, *Table) {
	t.Helper()
	c, _ := compileSeed(t)
	c.Features["active-users"] = &Feature{ID: "active-users", Name: "Active users", Meter: Meter{Kind: MeterEventBased, EventName: "login", Aggregation: AggUniqueCount, Dimension: "user"}}
	c.Features["peak-seats"] = &Feature{ID: "peak-seats", Name: "Peak seats", Meter: Meter{Kind: MeterEventBased, EventName: "seats", Aggregation: AggMax, Dimension: "n"}}
	c.Features["avg-latency"] = &Feature{ID: "avg-latency", Name: "Latency", Meter: Meter{Kind: MeterEventBased, EventName: "llm.call", Aggregation: AggAvg, Dimension: "ms"}}
	c.Features["eu-sms"] = &Feature{ID: "eu-sms", Name: "EU SMS", Meter: Meter{Kind: MeterEventBased, EventName: "sms", Aggregation: AggCount,
		Filters: []DimFilter{{Key: "country", Op: FilterIn, Values: []string{"FR", "DE", "49"}}, {Key: "test", Op: FilterNotIn, Values: []string{"true", "1"}}, {Key: "campaign", Op: FilterExists}}}}
	s := c.Subscriptions["sub-1"]
	s.Consumption = append(s.Consumption, ConsumptionRate{FeatureID: "active-users", CreditsPerUnit: credit.Credits(2)}, ConsumptionRate{FeatureID: "eu-sms", CreditsPerUnit: credit.Credits(1)})
	tbl, errs := Compile(c, 2)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return c, tbl
}

func TestRateUniqueCount(t *testing.T) {
	_, tbl := aggCatalog(t)
	start := t0.UTC().Truncate(time.Microsecond)
	rate := func(at time.Time, user Dim) Line {
		t.Helper()
		user.Key = "user"
		lines, err := tbl.Rate(&Event{CustomerID: "acme", Name: "login", Timestamp: at, Dims: []Dim{user}}, nil)
		if err != nil || len(lines) != 1 {
			t.Fatalf("lines %+v err %v", lines, err)
		}
		return lines[0]
	}
	l := rate(start.Add(time.Hour), Dim{Str: "u-1"})
	if !l.Unique || l.UniqueValue() != "u-1" || l.Credits != credit.Credits(2) || l.Quantity.String() != "1" || l.FeatureID != "active-users" {
		t.Errorf("line %+v", l)
	}
	if !l.Period.Equal(start) || !l.PeriodEnd.Equal(start.AddDate(0, 1, 0)) {
		t.Errorf("period %s..%s, want the first month from %s", l.Period, l.PeriodEnd, start)
	}
	// the second period starts a month after the start
	l2 := rate(start.AddDate(0, 1, 0), Dim{Num: num("42.0"), IsNum: true})
	if !l2.Period.Equal(start.AddDate(0, 1, 0)) || !l2.PeriodEnd.Equal(start.AddDate(0, 2, 0)) {
		t.Errorf("second period %s..%s", l2.Period, l2.PeriodEnd)
	}
	if l2.UniqueValue() != "42" || rate(start, Dim{Str: "42.00"}).UniqueValue() != "42" {
		t.Errorf("a number and its text must be one value: %q", l2.UniqueValue())
	}
	if _, err := tbl.Rate(&Event{CustomerID: "acme", Name: "login", Timestamp: start}, nil); !errors.Is(err, ErrMissingDimension) {
		t.Errorf("no user: %v", err)
	}
	long := make([]byte, MaxUniqueLen+1)
	for i := range long {
		long[i] = 'x'
	}
	if _, err := tbl.Rate(&Event{CustomerID: "acme", Name: "login", Timestamp: start, Dims: []Dim{{Key: "user", Str: string(long)}}}, nil); !errors.Is(err, ErrUniqueTooLong) {
		t.Errorf("long value: %v", err)
	}
}

func TestTooManyUniqueMetersPerEvent(t *testing.T) {
	c, _ := aggCatalog(t)
	s := c.Subscriptions["sub-1"]
	for i := 0; i < MaxUniquePerEvent; i++ {
		id := fmt.Sprint("u", i)
		c.Features[id] = &Feature{ID: id, Name: id, Meter: Meter{Kind: MeterEventBased, EventName: "login", Aggregation: AggUniqueCount, Dimension: "user"}}
		s.Consumption = append(s.Consumption, ConsumptionRate{FeatureID: id, CreditsPerUnit: credit.Credits(1)})
	}
	tbl, errs := Compile(c, 3)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if _, err := tbl.Rate(&Event{CustomerID: "acme", Name: "login", Timestamp: t0, Dims: []Dim{{Key: "user", Str: "u"}}}, nil); !errors.Is(err, ErrTooManyUnique) {
		t.Errorf("53 UNIQUE_COUNT meters: %v", err)
	}
}

func TestBillingPeriods(t *testing.T) {
	cs := &compiledSub{start: time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		at, start, end string
		yearly         bool
	}{
		{"2026-01-31T10:00:00Z", "2026-01-31T10:00:00Z", "2026-03-03T10:00:00Z", false},
		{"2026-03-03T09:59:59Z", "2026-01-31T10:00:00Z", "2026-03-03T10:00:00Z", false},
		{"2026-03-03T10:00:00Z", "2026-03-03T10:00:00Z", "2026-03-31T10:00:00Z", false},
		{"2026-12-31T10:00:00Z", "2026-12-31T10:00:00Z", "2027-01-31T10:00:00Z", false},
		{"2026-01-30T10:00:00Z", "2026-01-31T10:00:00Z", "2026-03-03T10:00:00Z", false}, // grace before the start
		{"2027-01-31T09:00:00Z", "2026-01-31T10:00:00Z", "2027-01-31T10:00:00Z", true},
		{"2027-02-01T00:00:00Z", "2027-01-31T10:00:00Z", "2028-01-31T10:00:00Z", true},
	} {
		cs.yearly = tc.yearly
		at, _ := time.Parse(time.RFC3339, tc.at)
		s, e := cs.period(at)
		if s.Format(time.RFC3339) != tc.start || e.Format(time.RFC3339) != tc.end {
			t.Errorf("yearly=%v at %s: period %s..%s, want %s..%s", tc.yearly, tc.at, s.Format(time.RFC3339), e.Format(time.RFC3339), tc.start, tc.end)
		}
	}
}

func TestRateReportingMeters(t *testing.T) {
	_, tbl := aggCatalog(t)
	// a reporting meter records the value with no credits, beside the billed one
	ev := Event{CustomerID: "acme", Name: "llm.call", Timestamp: t0, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("1000"), IsNum: true}, {Key: "ms", Num: num("-12.5"), IsNum: true}}}
	lines, err := tbl.Rate(&ev, nil)
	if err != nil || len(lines) != 2 {
		t.Fatalf("lines %+v err %v", lines, err)
	}
	if l := lines[1]; l.FeatureID != "avg-latency" || l.Quantity.String() != "-12.5" || l.Credits != 0 || l.Money != 0 {
		t.Errorf("reporting line %+v", l)
	}
	// an event only a reporting meter matches is still rated (one line, no credits)
	lines, err = tbl.Rate(&Event{CustomerID: "acme", Name: "seats", Timestamp: t0, Dims: []Dim{{Key: "n", Str: "7"}}}, nil)
	if err != nil || len(lines) != 1 || lines[0].FeatureID != "peak-seats" || lines[0].Quantity.String() != "7" || lines[0].Credits != 0 {
		t.Fatalf("seats: %+v %v", lines, err)
	}
	// without the value, or with a value that is no number, it records nothing
	for _, d := range [][]Dim{nil, {{Key: "n", Str: "many"}}} {
		if lines, err := tbl.Rate(&Event{CustomerID: "acme", Name: "seats", Timestamp: t0, Dims: d}, nil); err != nil || len(lines) != 0 {
			t.Errorf("seats %v: %+v %v", d, lines, err)
		}
	}
}

func TestRateFilterOperators(t *testing.T) {
	_, tbl := aggCatalog(t)
	for _, tc := range []struct {
		name string
		dims []Dim
		want bool
	}{
		{"in, exists, not_in absent", []Dim{{Key: "country", Str: "FR"}, {Key: "campaign", Str: "x"}}, true},
		{"in by number", []Dim{{Key: "country", Num: num("49.0"), IsNum: true}, {Key: "campaign", Num: num("0"), IsNum: true}}, true},
		{"not in the in list", []Dim{{Key: "country", Str: "US"}, {Key: "campaign", Str: "x"}}, false},
		{"in is case-sensitive", []Dim{{Key: "country", Str: "fr"}, {Key: "campaign", Str: "x"}}, false},
		{"in needs the dimension", []Dim{{Key: "campaign", Str: "x"}}, false},
		{"exists needs the dimension", []Dim{{Key: "country", Str: "DE"}}, false},
		{"not_in listed", []Dim{{Key: "country", Str: "DE"}, {Key: "campaign", Str: "x"}, {Key: "test", Str: "true"}}, false},
		{"not_in listed number", []Dim{{Key: "country", Str: "DE"}, {Key: "campaign", Str: "x"}, {Key: "test", Num: num("1"), IsNum: true}}, false},
		{"not_in other value", []Dim{{Key: "country", Str: "DE"}, {Key: "campaign", Str: "x"}, {Key: "test", Str: "false"}}, true},
	} {
		lines, err := tbl.Rate(&Event{CustomerID: "acme", Name: "sms", Timestamp: t0, Dims: tc.dims}, nil)
		if err != nil || (len(lines) == 1) != tc.want {
			t.Errorf("%s: lines %+v err %v, want match %v", tc.name, lines, err, tc.want)
		}
	}
}

func TestRateAggregationsAllocateNothing(t *testing.T) {
	_, tbl := aggCatalog(t)
	r := NewRater(tbl)
	events := []Event{
		{CustomerID: "acme", Name: "login", Timestamp: t0.Add(40 * 24 * time.Hour), Dims: []Dim{{Key: "user", Str: "u-1"}}},
		{CustomerID: "acme", Name: "sms", Timestamp: t0, Dims: []Dim{{Key: "country", Str: "DE"}, {Key: "campaign", Str: "x"}, {Key: "test", Str: "no"}}},
		{CustomerID: "acme", Name: "seats", Timestamp: t0, Dims: []Dim{{Key: "n", Num: num("3"), IsNum: true}}},
	}
	buf := make([]Line, 0, 8)
	for i := range events {
		allocs := testing.AllocsPerRun(1000, func() {
			var err error
			if buf, err = r.Rate(&events[i], buf[:0]); err != nil || len(buf) != 1 {
				t.Fatal(buf, err)
			}
		})
		if allocs != 0 {
			t.Errorf("event %s: Rate allocates %v", events[i].Name, allocs)
		}
	}
}

func BenchmarkRateAggregations(b *testing.B) {
	_, tbl := aggCatalog(b)
	r := NewRater(tbl)
	events := []Event{
		{CustomerID: "acme", Name: "login", Timestamp: t0.Add(40 * 24 * time.Hour), Dims: []Dim{{Key: "user", Str: "u-1"}}},
		{CustomerID: "acme", Name: "sms", Timestamp: t0, Dims: []Dim{{Key: "country", Str: "DE"}, {Key: "campaign", Str: "x"}, {Key: "test", Str: "no"}}},
	}
	buf := make([]Line, 0, 8)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var err error
		if buf, err = r.Rate(&events[i&1], buf[:0]); err != nil || len(buf) != 1 {
			b.Fatal(err)
		}
	}
}

func TestReportingMetersCannotBeMapped(t *testing.T) {
	c, _ := aggCatalog(t)
	for _, id := range []string{"peak-seats", "avg-latency"} {
		err := validateRates("consumption", []ConsumptionRate{{FeatureID: id, CreditsPerUnit: credit.Credits(1)}}, c)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Message != MsgOnlyEventBased || fe.Field != "consumption[0].feature_id" || fe.Code != "meter_reporting_only" {
			t.Errorf("%s: %v", id, err)
		}
	}
	if err := validateRates("consumption", []ConsumptionRate{{FeatureID: "active-users", CreditsPerUnit: credit.Credits(1)}}, c); err != nil {
		t.Errorf("UNIQUE_COUNT is billable: %v", err)
	}
}

func TestValidateAggregationsAndFilters(t *testing.T) {
	m := func(agg Aggregation, dim string, fs ...DimFilter) Feature {
		return Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterEventBased, EventName: "e", Aggregation: agg, Dimension: dim, Filters: fs}}
	}
	many := make([]string, MaxFilterValues+1)
	for i := range many {
		many[i] = string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	for _, tc := range []struct {
		name  string
		f     Feature
		field string
	}{
		{"unique", m(AggUniqueCount, "user"), ""},
		{"max", m(AggMax, "n"), ""},
		{"latest", m(AggLatest, "n"), ""},
		{"avg", m(AggAvg, "n"), ""},
		{"unique without dimension", m(AggUniqueCount, ""), "meter.dimension"},
		{"avg without dimension", m(AggAvg, ""), "meter.dimension"},
		{"unknown aggregation", m("MEDIAN", "n"), "meter.aggregation"},
		{"eq", m(AggCount, "", DimFilter{Key: "k", Value: "v"}), ""},
		{"explicit eq", m(AggCount, "", DimFilter{Key: "k", Op: FilterEq, Value: "v"}), ""},
		{"in", m(AggCount, "", DimFilter{Key: "k", Op: FilterIn, Values: []string{"a", "b"}}), ""},
		{"not_in", m(AggCount, "", DimFilter{Key: "k", Op: FilterNotIn, Values: []string{"a"}}), ""},
		{"exists", m(AggCount, "", DimFilter{Key: "k", Op: FilterExists}), ""},
		{"eq with values", m(AggCount, "", DimFilter{Key: "k", Values: []string{"a"}}), "meter.filters[0].values"},
		{"in without values", m(AggCount, "", DimFilter{Key: "k", Op: FilterIn}), "meter.filters[0].values"},
		{"in with value", m(AggCount, "", DimFilter{Key: "k", Op: FilterIn, Value: "a", Values: []string{"a"}}), "meter.filters[0].value"},
		{"in with a value twice", m(AggCount, "", DimFilter{Key: "k", Op: FilterIn, Values: []string{"a", "a"}}), "meter.filters[0].values[1]"},
		{"in with too many values", m(AggCount, "", DimFilter{Key: "k", Op: FilterIn, Values: many}), "meter.filters[0].values"},
		{"exists with value", m(AggCount, "", DimFilter{Key: "k", Op: FilterExists, Value: "a"}), "meter.filters[0].op"},
		{"unknown op", m(AggCount, "", DimFilter{Key: "k", Op: "like", Value: "a"}), "meter.filters[0].op"},
		{"key twice", m(AggCount, "", DimFilter{Key: "k", Op: FilterExists}, DimFilter{Key: "k", Value: "a"}), "meter.filters[1].key"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkFieldErr(t, ValidateFeature(&tc.f), tc.field, ErrInvalid, "") })
	}
}
