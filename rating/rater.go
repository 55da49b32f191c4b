package rating

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// Event is a usage event as the rater consumes it. Ingest decodes JSON into a
// reused Event; the rater only reads it.
type Event struct {
	ID             string
	CustomerID     string
	SubscriptionID string // empty: the customer's active prepaid subscription at Timestamp
	Name           string
	Timestamp      time.Time
	Dims           []Dim
}

// Dim is one dimension of an event: a string, or an exact number when IsNum.
type Dim struct {
	Key   string
	Str   string
	Num   Number
	IsNum bool
}

// Dim returns the dimension named key.
func (e *Event) Dim(key string) (*Dim, bool) {
	for i := range e.Dims {
		if e.Dims[i].Key == key {
			return &e.Dims[i], true
		}
	}
	return nil, false
}

// Money is an exact amount of a currency in nano-units (10^-9), the precision
// of the archive's Decimal(38,9) columns.
type Money int64

// MoneyScale is the number of decimal places of Money.
const MoneyScale = 9

// Decimal is the amount in currency units.
func (m Money) Decimal() decimal.Decimal { return decimal.New(int64(m), -MoneyScale) }

// String is the amount in currency units, e.g. "0.04".
func (m Money) String() string { return m.Decimal().String() }

// MarshalJSON writes a decimal string.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(m.String())), nil }

// Line is one rated line: what one meter of one subscription made of an event.
// Its strings point into the compiled table; a Line allocates nothing.
type Line struct {
	SubscriptionID string
	CustomerID     string
	FeatureID      string
	Quantity       Number
	Credits        credit.Amount
	CreditCurrency string
	Money          Money // Credits × the subscription's credit value
	MoneyCurrency  string
	Overage        OveragePolicy
	// UNIQUE_COUNT lines: the value counted (UniqueStr, or UniqueNum when
	// UniqueIsNum) and the billing period [Period, PeriodEnd) of the event.
	// The balance charges the line only the first time the value appears
	// in the period (UniqueValue).
	Unique      bool
	UniqueStr   string
	UniqueNum   Number
	UniqueIsNum bool
	Period      time.Time
	PeriodEnd   time.Time
}

// UniqueValue is the canonical text of a UNIQUE_COUNT line's value: a
// number and its text are one value ("2", 2 and 2.0).
func (l Line) UniqueValue() string {
	if l.UniqueIsNum {
		return l.UniqueNum.String()
	}
	if n, err := ParseNumber(l.UniqueStr); err == nil {
		return n.String()
	}
	return l.UniqueStr
}

// MaxUniqueLen bounds the bytes of a value a UNIQUE_COUNT meter remembers.
const MaxUniqueLen = 256

// Rating errors: the event cannot be rated (a DLQ reason).
var (
	ErrUnknownSubscription   = errors.New("rating: unknown subscription")
	ErrNoActiveSubscription  = errors.New("rating: customer has no active prepaid subscription at the event's time")
	ErrSubscriptionNotActive = errors.New("rating: event is before the subscription starts")
	ErrSubscriptionEnded     = errors.New("rating: the subscription ended before the event's time, or its books closed (end + grace window)")
	ErrCustomerMismatch      = errors.New("rating: subscription belongs to another customer")
	ErrMissingDimension      = errors.New("rating: event lacks the dimension a SUM meter sums")
	ErrDimensionNotNumber    = errors.New("rating: dimension a SUM meter sums is not a number")
	ErrNegativeQuantity      = errors.New("rating: negative quantity")
	ErrOverflow              = errors.New("rating: credits or money beyond range")
	ErrUniqueTooLong         = errors.New("rating: value a UNIQUE_COUNT meter counts is longer than 256 bytes")
	ErrTooManyUnique         = errors.New("rating: more than 52 UNIQUE_COUNT meters match the event")
)

// MaxUniquePerEvent bounds the UNIQUE_COUNT meters one event may match (the
// balance reports their repeats as a bit mask).
const MaxUniquePerEvent = 52

type fval struct {
	str   string
	num   Number
	isNum bool // the filter value parses as a number
}

func (v *fval) eq(d *Dim) bool {
	if d.IsNum {
		return v.isNum && d.Num.Equal(v.num)
	}
	return d.Str == v.str
}

type filter struct {
	key  string
	op   FilterOp
	vals []fval
}

// Row aggregations.
const (
	aggCount  = iota
	aggSum    // quantity: the dimension's value
	aggUnique // quantity 1, charged once per value and period by the balance
	aggReport // MAX, LATEST, AVG: quantity the dimension's value, no credits
)

type row struct {
	featureID string
	agg       int
	dim       string
	filters   []filter
	rate      uint64 // micro-credits per unit
}

type compiledSub struct {
	id, customerID string
	creditCurrency string
	currency       string
	value          uint64 // nano-units of currency per credit
	overage        OveragePolicy
	start          time.Time
	yearly         bool      // billing period: a year, else a month
	end            time.Time // zero: open-ended
	byEvent        map[string][]row
}

// ended reports whether cs takes no event stamped at: at or after its end,
// or (with grace) any event once now is past end + grace, when its
// remaining credits may have moved on.
func (cs *compiledSub) ended(at time.Time, grace time.Duration, now func() time.Time) bool {
	return !cs.end.IsZero() && (!at.Before(cs.end) || !now().Before(cs.end.Add(grace)))
}

// Table is the compiled, immutable rating state of one catalog version.
type Table struct {
	version    uint64
	subs       map[string]*compiledSub
	byCustomer map[string][]*compiledSub // newest start first
}

// Version is the catalog version the table was compiled from.
func (t *Table) Version() uint64 { return t.version }

// Len is the number of subscriptions the table rates.
func (t *Table) Len() int { return len(t.subs) }

// Compile builds the rating table of every subscription of a catalog. A
// subscription that does not compile (the catalog changed under it) is left
// out and reported in errs; the others are rated.
func Compile(c *Catalog, version uint64) (t *Table, errs []error) {
	t = &Table{version: version, subs: make(map[string]*compiledSub, len(c.Subscriptions)), byCustomer: map[string][]*compiledSub{}}
	for _, s := range c.Subscriptions {
		cs, err := compileSub(s, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("subscription %s: %w", s.ID, err))
			continue
		}
		t.subs[cs.id] = cs
		t.byCustomer[cs.customerID] = append(t.byCustomer[cs.customerID], cs)
	}
	for _, list := range t.byCustomer {
		sortNewestFirst(list)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return t, errs
}

func compileSub(s *Subscription, c *Catalog) (*compiledSub, error) {
	plan, ok := c.Plans[s.PlanID]
	if !ok || plan.Prepaid == nil {
		return nil, fmt.Errorf("plan %q is missing or not prepaid", s.PlanID)
	}
	value, _, ok := EffectiveCreditValue(s, plan)
	if !ok {
		return nil, fmt.Errorf("plan %q has no credit value in %s", plan.ID, s.Currency)
	}
	nanos := value.Shift(MoneyScale)
	if !nanos.Equal(nanos.Truncate(0)) || !nanos.IsPositive() || nanos.GreaterThan(decimal.NewFromInt(1<<62)) {
		return nil, fmt.Errorf("credit value %s out of range", value)
	}
	cs := &compiledSub{
		id: s.ID, customerID: s.CustomerID, creditCurrency: plan.Prepaid.CreditCurrency,
		currency: s.Currency, value: uint64(nanos.IntPart()), overage: plan.Prepaid.Overage,
		start: s.StartAt, yearly: s.Billing.Period == PeriodYear, byEvent: map[string][]row{},
	}
	if s.EndAt != nil {
		cs.end = *s.EndAt
	}
	for _, r := range EffectiveRates(s, plan, c) {
		f := c.Features[r.FeatureID]
		if !f.Meter.Billable() {
			return nil, fmt.Errorf("feature %q: %s", f.ID, MsgOnlyEventBased)
		}
		if r.CreditsPerUnit <= 0 {
			return nil, fmt.Errorf("feature %q: rate %s not positive", f.ID, r.CreditsPerUnit)
		}
		agg := aggCount
		switch f.Meter.Aggregation {
		case AggSum:
			agg = aggSum
		case AggUniqueCount:
			agg = aggUnique
		}
		cs.add(f, agg, uint64(r.CreditsPerUnit))
	}
	// Reporting meters belong to no plan: every subscription records them,
	// with no credits, for the archive's MAX, LATEST and AVG.
	for _, id := range sortedIDs(c.Features) {
		if f := c.Features[id]; f.Meter.Kind == MeterEventBased && f.Meter.Aggregation.Reporting() {
			cs.add(f, aggReport, 0)
		}
	}
	return cs, nil
}

func (cs *compiledSub) add(f *Feature, agg int, rate uint64) {
	rw := row{featureID: f.ID, agg: agg, dim: f.Meter.Dimension, rate: rate}
	for _, fl := range f.Meter.Filters {
		cf := filter{key: fl.Key, op: fl.Op}
		vals := fl.Values
		if fl.Op == "" || fl.Op == FilterEq {
			cf.op, vals = FilterEq, []string{fl.Value}
		}
		for _, v := range vals {
			fv := fval{str: v}
			if n, err := ParseNumber(v); err == nil {
				fv.num, fv.isNum = n, true
			}
			cf.vals = append(cf.vals, fv)
		}
		rw.filters = append(rw.filters, cf)
	}
	cs.byEvent[f.Meter.EventName] = append(cs.byEvent[f.Meter.EventName], rw)
}

func sortedIDs(m map[string]*Feature) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// period is the billing period holding at: periods follow each other from
// the subscription's start, a month or a year long (time.AddDate).
func (cs *compiledSub) period(at time.Time) (start, end time.Time) {
	s := cs.start.UTC()
	if at.Before(s) { // within the grace window before the first start
		at = s
	}
	a := at.UTC()
	n := (a.Year()-s.Year())*12 + int(a.Month()) - int(s.Month())
	step := 1
	if cs.yearly {
		step = 12
		n = n / 12 * 12
	}
	start = s.AddDate(0, n, 0)
	for start.After(a) {
		n -= step
		start = s.AddDate(0, n, 0)
	}
	return start, s.AddDate(0, n+step, 0)
}

// Resolve is the customer's active prepaid subscription at, the one with the
// latest start not after at (a newer subscription supersedes an older one).
func (t *Table) Resolve(customerID string, at time.Time) (string, bool) {
	if cs, _ := t.resolve(customerID, at, 0, time.Now); cs != nil {
		return cs.id, true
	}
	return "", false
}

// resolve is the subscription active at at. Subscriptions of a customer do
// not overlap (the catalog refuses it), so the latest start not after at is
// the one; if it has ended, so has the event's. An event up to grace before
// a subscription starts belongs to it when no subscription was active at
// its time (a producer's clock a moment behind, the same second as a
// sub-second start); otherwise it is the earlier one's (a plan change).
func (t *Table) resolve(customerID string, at time.Time, grace time.Duration, now func() time.Time) (*compiledSub, error) {
	list := t.byCustomer[customerID]
	for i, cs := range list {
		if cs.start.After(at) {
			continue
		}
		if !cs.ended(at, grace, now) {
			return cs, nil
		}
		if i > 0 && cs.endedAt(at) && list[i-1].takesEarly(at, grace, now) {
			return list[i-1], nil
		}
		return nil, ErrSubscriptionEnded
	}
	if n := len(list); n > 0 && list[n-1].takesEarly(at, grace, now) {
		return list[n-1], nil
	}
	return nil, ErrNoActiveSubscription
}

// endedAt reports whether cs ended at or before at.
func (cs *compiledSub) endedAt(at time.Time) bool { return !cs.end.IsZero() && !at.Before(cs.end) }

// takesEarly reports whether cs takes an event at, up to grace before its start.
func (cs *compiledSub) takesEarly(at time.Time, grace time.Duration, now func() time.Time) bool {
	return !cs.start.Add(-grace).After(at) && !cs.ended(at, grace, now)
}

// freeBefore reports whether no subscription of cs's customer but cs was
// active at at, a moment before cs starts.
func (t *Table) freeBefore(cs *compiledSub, at time.Time) bool {
	list := t.byCustomer[cs.customerID]
	for i := range list {
		if list[i] == cs {
			return i == len(list)-1 || list[i+1].endedAt(at)
		}
	}
	return false
}

// Rate appends to dst the rated lines of ev, one per matching meter of its
// subscription (zero when none match). It allocates nothing when dst has room.
func (t *Table) Rate(ev *Event, dst []Line) ([]Line, error) { return t.rate(ev, dst, 0, time.Now) }

// rate is Rate with a grace window before the customer's first subscription
// and after a subscription's end; now is read only for an ended one.
func (t *Table) rate(ev *Event, dst []Line, grace time.Duration, now func() time.Time) ([]Line, error) {
	var cs *compiledSub
	if ev.SubscriptionID != "" {
		cs = t.subs[ev.SubscriptionID]
		if cs == nil {
			return dst, ErrUnknownSubscription
		}
		if cs.customerID != ev.CustomerID {
			return dst, ErrCustomerMismatch
		}
		if ev.Timestamp.Before(cs.start) && (ev.Timestamp.Before(cs.start.Add(-grace)) || !t.freeBefore(cs, ev.Timestamp)) {
			return dst, ErrSubscriptionNotActive
		}
		if cs.ended(ev.Timestamp, grace, now) {
			return dst, ErrSubscriptionEnded
		}
	} else {
		var err error
		if cs, err = t.resolve(ev.CustomerID, ev.Timestamp, grace, now); err != nil {
			return dst, err
		}
	}
	rows := cs.byEvent[ev.Name]
	n0 := len(dst)
	nu := 0
	for i := range rows {
		r := &rows[i]
		if !matches(r.filters, ev) {
			continue
		}
		q := Number{Mant: 1}
		var uq *Dim
		switch r.agg {
		case aggSum, aggReport:
			d, ok := ev.Dim(r.dim)
			if !ok && r.agg == aggReport {
				continue // a reporting meter records only events that have its value
			}
			if !ok {
				return dst[:n0], ErrMissingDimension
			}
			if d.IsNum {
				q = d.Num
			} else {
				var err error
				if q, err = ParseNumber(d.Str); err != nil && r.agg == aggReport {
					continue
				} else if err != nil {
					return dst[:n0], ErrDimensionNotNumber
				}
			}
			if r.agg == aggReport {
				dst = append(dst, Line{
					SubscriptionID: cs.id, CustomerID: cs.customerID, FeatureID: r.featureID, Quantity: q,
					CreditCurrency: cs.creditCurrency, MoneyCurrency: cs.currency, Overage: cs.overage,
				})
				continue
			}
		case aggUnique:
			d, ok := ev.Dim(r.dim)
			if !ok {
				return dst[:n0], ErrMissingDimension
			}
			if len(d.Str) > MaxUniqueLen {
				return dst[:n0], ErrUniqueTooLong
			}
			if nu++; nu > MaxUniquePerEvent {
				return dst[:n0], ErrTooManyUnique
			}
			uq = d
		}
		if q.Mant < 0 {
			return dst[:n0], ErrNegativeQuantity
		}
		if q.Scale > MaxScale { // only a hand-built Number; ParseNumber never makes one
			return dst[:n0], ErrBadNumber
		}
		credits, ok := mulDivRound(uint64(q.Mant), r.rate, pow10[q.Scale])
		if !ok || credits > uint64(credit.MaxAmount) {
			return dst[:n0], ErrOverflow
		}
		money, ok := mulDivRound(credits, cs.value, uint64(credit.Unit))
		if !ok {
			return dst[:n0], ErrOverflow
		}
		dst = append(dst, Line{
			SubscriptionID: cs.id, CustomerID: cs.customerID, FeatureID: r.featureID,
			Quantity: q, Credits: credit.Amount(credits), CreditCurrency: cs.creditCurrency,
			Money: Money(money), MoneyCurrency: cs.currency, Overage: cs.overage,
		})
		if uq != nil {
			l := &dst[len(dst)-1]
			l.Unique, l.UniqueStr, l.UniqueNum, l.UniqueIsNum = true, uq.Str, uq.Num, uq.IsNum
			l.Period, l.PeriodEnd = cs.period(ev.Timestamp)
		}
	}
	return dst, nil
}

func matches(fs []filter, ev *Event) bool {
	for i := range fs {
		f := &fs[i]
		d, ok := ev.Dim(f.key)
		switch f.op {
		case FilterExists:
			if !ok {
				return false
			}
		case FilterNotIn:
			if ok && f.any(d) {
				return false
			}
		default: // eq, in
			if !ok || !f.any(d) {
				return false
			}
		}
	}
	return true
}

func (f *filter) any(d *Dim) bool {
	for i := range f.vals {
		if f.vals[i].eq(d) {
			return true
		}
	}
	return false
}

// Rater rates events with the newest compiled table. Swap replaces the table
// atomically, so catalog changes reach a running rater without a restart and
// without blocking Rate.
type Rater struct {
	t     atomic.Pointer[Table]
	grace atomic.Int64 // ns; see SetGraceWindow
	now   func() time.Time
}

// SetClock sets the clock that closes an ended subscription's books (end +
// grace window); the default is time.Now. Call it before rating.
func (r *Rater) SetClock(now func() time.Time) { r.now = now }

// SetGraceWindow lets events stamped up to d before a customer's first
// subscription starts be rated to it, and events stamped before a
// subscription's end be rated to it until d after the end (the balance's
// grace window).
func (r *Rater) SetGraceWindow(d time.Duration) { r.grace.Store(int64(max(d, 0))) }

// NewRater starts with table t; nil means an empty table.
func NewRater(t *Table) *Rater {
	if t == nil {
		t, _ = Compile(NewCatalog(), 0)
	}
	r := &Rater{now: time.Now}
	r.t.Store(t)
	return r
}

// Swap installs t unless the rater already has a newer version; it reports
// whether t was installed.
func (r *Rater) Swap(t *Table) bool {
	for {
		old := r.t.Load()
		if old.version > t.version {
			return false
		}
		if r.t.CompareAndSwap(old, t) {
			return true
		}
	}
}

// Table is the current table; rate a batch against one Table to see one
// consistent catalog version.
func (r *Rater) Table() *Table { return r.t.Load() }

// Rate rates ev with the current table (see Table.Rate) and the grace window.
func (r *Rater) Rate(ev *Event, dst []Line) ([]Line, error) {
	return r.t.Load().rate(ev, dst, time.Duration(r.grace.Load()), r.now)
}

// Resolve is Table.Resolve on the current table, with the grace window.
func (r *Rater) Resolve(customerID string, at time.Time) (string, bool) {
	if cs, _ := r.t.Load().resolve(customerID, at, time.Duration(r.grace.Load()), r.now); cs != nil {
		return cs.id, true
	}
	return "", false
}

// Extend returns a copy of t at version with subs added (or replaced),
// compiled against c, which must hold their plans and features. It lets a
// catalog refresh compile only new subscriptions instead of all of them.
func (t *Table) Extend(c *Catalog, subs []*Subscription, version uint64) (*Table, []error) {
	n := &Table{version: version, subs: make(map[string]*compiledSub, len(t.subs)+len(subs)), byCustomer: make(map[string][]*compiledSub, len(t.byCustomer)+len(subs))}
	for k, v := range t.subs {
		n.subs[k] = v
	}
	for k, v := range t.byCustomer {
		n.byCustomer[k] = v // shared until changed below; never mutated in place
	}
	var errs []error
	for _, s := range subs {
		cs, err := compileSub(s, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("subscription %s: %w", s.ID, err))
			continue
		}
		list := make([]*compiledSub, 0, len(n.byCustomer[cs.customerID])+1)
		for _, o := range n.byCustomer[cs.customerID] {
			if o.id != cs.id {
				list = append(list, o)
			}
		}
		if old := n.subs[cs.id]; old != nil && old.customerID != cs.customerID {
			n.byCustomer[old.customerID] = without(n.byCustomer[old.customerID], cs.id)
		}
		list = append(list, cs)
		sortNewestFirst(list)
		n.subs[cs.id] = cs
		n.byCustomer[cs.customerID] = list
	}
	return n, errs
}

func without(list []*compiledSub, id string) []*compiledSub {
	out := make([]*compiledSub, 0, len(list))
	for _, o := range list {
		if o.id != id {
			out = append(out, o)
		}
	}
	return out
}

func sortNewestFirst(list []*compiledSub) {
	sort.Slice(list, func(i, j int) bool {
		if !list[i].start.Equal(list[j].start) {
			return list[i].start.After(list[j].start)
		}
		return list[i].id > list[j].id
	})
}
