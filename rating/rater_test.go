package rating

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
)

func compileSeed(t testing.TB) (*Catalog, *Table) {
	t.Helper()
	c := seedCatalog()
	s := seedSubscription()
	if _, err := PrepareSubscription(s, c, t0); err != nil {
		t.Fatal(err)
	}
	c.Subscriptions[s.ID] = s
	tbl, errs := Compile(c, 1)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return c, tbl
}

func num(s string) Number {
	n, err := ParseNumber(s)
	if err != nil {
		panic(err)
	}
	return n
}

func TestRateSeed(t *testing.T) {
	_, tbl := compileSeed(t)
	at := t0.Add(time.Minute)
	cases := []struct {
		name    string
		ev      Event
		feature string
		qty     string
		credits string
		money   string
		err     error
	}{
		{"one email = 1 AIT worth 0.04 USD", Event{ID: "e1", CustomerID: "acme", SubscriptionID: "sub-1", Name: "email.sent", Timestamp: at}, "ai-agent-email", "1", "1", "0.04", nil},
		{"resolved by customer", Event{ID: "e2", CustomerID: "acme", Name: "email.sent", Timestamp: at}, "ai-agent-email", "1", "1", "0.04", nil},
		{"1234 tokens at 0.001", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("1234"), IsNum: true}}}, "llm-tokens", "1234", "1.234", "0.04936", nil},
		{"tokens as a string", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Str: "0.0005"}}}, "llm-tokens", "0.0005", "0.000001", "0.00000004", nil},
		{"rounds half away from zero", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("0.0015"), IsNum: true}}}, "llm-tokens", "0.0015", "0.000002", "0.00000008", nil},
		{"rounds down below half", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("0.00049"), IsNum: true}}}, "llm-tokens", "0.00049", "0", "0", nil},
		{"filter does not match", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "small"}, {Key: "tokens", Num: num("5"), IsNum: true}}}, "", "", "", "", nil},
		{"other event name", Event{CustomerID: "acme", Name: "sms.sent", Timestamp: at}, "", "", "", "", nil},
		{"missing dimension", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}}}, "", "", "", "", ErrMissingDimension},
		{"dimension not a number", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Str: "many"}}}, "", "", "", "", ErrDimensionNotNumber},
		{"negative quantity", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("-1"), IsNum: true}}}, "", "", "", "", ErrNegativeQuantity},
		{"overflow", Event{CustomerID: "acme", Name: "llm.call", Timestamp: at, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("9000000000000000000"), IsNum: true}}}, "", "", "", "", ErrOverflow},
		{"unknown subscription", Event{CustomerID: "acme", SubscriptionID: "nope", Name: "email.sent", Timestamp: at}, "", "", "", "", ErrUnknownSubscription},
		{"another customer's subscription", Event{CustomerID: "globex", SubscriptionID: "sub-1", Name: "email.sent", Timestamp: at}, "", "", "", "", ErrCustomerMismatch},
		{"customer without subscription", Event{CustomerID: "globex", Name: "email.sent", Timestamp: at}, "", "", "", "", ErrNoActiveSubscription},
		{"before the start, explicit", Event{CustomerID: "acme", SubscriptionID: "sub-1", Name: "email.sent", Timestamp: t0.Add(-time.Second)}, "", "", "", "", ErrSubscriptionNotActive},
		{"before the start, resolved", Event{CustomerID: "acme", Name: "email.sent", Timestamp: t0.Add(-time.Second)}, "", "", "", "", ErrNoActiveSubscription},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := tbl.Rate(&tc.ev, nil)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.feature == "" {
				if len(lines) != 0 {
					t.Fatalf("want no lines, got %+v", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("want 1 line, got %+v", lines)
			}
			l := lines[0]
			if l.FeatureID != tc.feature || l.Quantity.String() != tc.qty || l.Credits.String() != tc.credits || l.Money.String() != tc.money {
				t.Errorf("line %s qty %s credits %s money %s; want %s %s %s %s", l.FeatureID, l.Quantity, l.Credits, l.Money, tc.feature, tc.qty, tc.credits, tc.money)
			}
			if l.SubscriptionID != "sub-1" || l.CustomerID != "acme" || l.CreditCurrency != "AIT" || l.MoneyCurrency != "USD" || l.Overage != OverageUnfunded {
				t.Errorf("line header %+v", l)
			}
		})
	}
}

func TestOneEventSeveralMeters(t *testing.T) {
	c, _ := compileSeed(t)
	c.Features["email-count-eu"] = &Feature{ID: "email-count-eu", Name: "EU emails", Meter: Meter{Kind: MeterEventBased, EventName: "email.sent", Aggregation: AggCount, Filters: []DimFilter{{Key: "region", Value: "eu"}, {Key: "priority", Value: "2"}}}}
	c.Subscriptions["sub-1"].Consumption = append(c.Subscriptions["sub-1"].Consumption, ConsumptionRate{FeatureID: "email-count-eu", CreditsPerUnit: credit.MustParse("0.5")})
	tbl, errs := Compile(c, 2)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ev := Event{CustomerID: "acme", Name: "email.sent", Timestamp: t0, Dims: []Dim{{Key: "region", Str: "eu"}, {Key: "priority", Num: num("2.0"), IsNum: true}}}
	lines, err := tbl.Rate(&ev, nil)
	if err != nil || len(lines) != 2 {
		t.Fatalf("lines %+v err %v", lines, err)
	}
	var total credit.Amount
	for _, l := range lines {
		total += l.Credits
	}
	if total != credit.MustParse("1.5") {
		t.Errorf("total %s, want 1.5", total)
	}
	ev.Dims[1].Num = num("3")
	if lines, _ := tbl.Rate(&ev, nil); len(lines) != 1 {
		t.Errorf("numeric filter 2 matched priority 3: %+v", lines)
	}
}

func TestSubscriptionOverridesPlanRow(t *testing.T) {
	c, _ := compileSeed(t)
	s := c.Subscriptions["sub-1"]
	s.Consumption = append(s.Consumption, ConsumptionRate{FeatureID: "ai-agent-email", CreditsPerUnit: credit.MustParse("2.5")})
	tbl, _ := Compile(c, 2)
	lines, err := tbl.Rate(&Event{CustomerID: "acme", Name: "email.sent", Timestamp: t0}, nil)
	if err != nil || len(lines) != 1 || lines[0].Credits != credit.MustParse("2.5") || lines[0].Money.String() != "0.1" {
		t.Fatalf("override: %+v %v", lines, err)
	}
}

func TestResolveNewestStartWins(t *testing.T) {
	c, _ := compileSeed(t)
	later := *c.Subscriptions["sub-1"]
	later.ID, later.StartAt, later.CreditValue = "sub-2", t0.Add(24*time.Hour), nil
	c.Subscriptions["sub-2"] = &later
	tbl, errs := Compile(c, 2)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{{t0, "sub-1"}, {t0.Add(23 * time.Hour), "sub-1"}, {t0.Add(24 * time.Hour), "sub-2"}, {t0.Add(48 * time.Hour), "sub-2"}} {
		if got, ok := tbl.Resolve("acme", tc.at); !ok || got != tc.want {
			t.Errorf("Resolve at %s = %q %v, want %s", tc.at, got, ok, tc.want)
		}
	}
	if _, ok := tbl.Resolve("acme", t0.Add(-time.Nanosecond)); ok {
		t.Error("resolved before any start")
	}
	lines, _ := tbl.Rate(&Event{CustomerID: "acme", Name: "email.sent", Timestamp: t0.Add(25 * time.Hour)}, nil)
	if len(lines) != 1 || lines[0].SubscriptionID != "sub-2" || lines[0].Money.String() != "1" {
		t.Errorf("rated with %+v", lines)
	}
}

func TestCompileReportsBrokenSubscription(t *testing.T) {
	c, _ := compileSeed(t)
	s := *c.Subscriptions["sub-1"]
	s.ID, s.CreditValue, s.Currency = "sub-broken", nil, "GBP"
	c.Subscriptions[s.ID] = &s
	tbl, errs := Compile(c, 3)
	if len(errs) != 1 || tbl.Len() != 1 {
		t.Fatalf("errs %v, %d compiled", errs, tbl.Len())
	}
}

func TestRaterSwap(t *testing.T) {
	c, tbl := compileSeed(t)
	r := NewRater(nil)
	ev := Event{CustomerID: "acme", Name: "email.sent", Timestamp: t0}
	if _, err := r.Rate(&ev, nil); !errors.Is(err, ErrNoActiveSubscription) {
		t.Fatalf("empty rater: %v", err)
	}
	if !r.Swap(tbl) {
		t.Fatal("swap to version 1 refused")
	}
	lines, err := r.Rate(&ev, nil)
	if err != nil || len(lines) != 1 || lines[0].Credits != credit.Credits(1) {
		t.Fatalf("after swap: %+v %v", lines, err)
	}
	c.Plans["ai-prepaid"].Prepaid.Consumption[0].CreditsPerUnit = credit.Credits(3)
	tbl2, _ := Compile(c, 2)
	r.Swap(tbl2)
	if lines, _ := r.Rate(&ev, nil); lines[0].Credits != credit.Credits(3) {
		t.Fatalf("plan change not seen: %+v", lines)
	}
	if r.Swap(tbl) || r.Table().Version() != 2 {
		t.Error("an older table replaced a newer one")
	}
}

func TestParseNumber(t *testing.T) {
	ok := map[string]Number{"0": {}, "12": {12, 0}, "-0.5": {-5, 1}, "1.50": {15, 1}, "1.5e3": {1500, 0}, "25E-2": {25, 2}, "0.000": {}, "100": {100, 0}, "9223372036854775807": {1<<63 - 1, 0}}
	for s, want := range ok {
		got, err := ParseNumber(s)
		if err != nil || got != want {
			t.Errorf("ParseNumber(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-", ".", "1.2.3", "1e", "abc", "1x", "9223372036854775808", "1e19", "1e-19", "0x10"} {
		if _, err := ParseNumber(s); !errors.Is(err, ErrBadNumber) {
			t.Errorf("ParseNumber(%q) err = %v, want ErrBadNumber", s, err)
		}
	}
	if !(Number{2, 0}).Equal(Number{200, 2}) || (Number{2, 0}).Equal(Number{201, 2}) {
		t.Error("Equal across scales")
	}
}

// refRate is the slow exact reference: quantity × rate rounded half away from
// zero to 6 places, then × value rounded half away from zero to 9 places.
func refRate(q Number, rate credit.Amount, valueNanos int64) (credits, money *big.Int) {
	x := new(big.Rat).SetFrac(big.NewInt(q.Mant), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(q.Scale)), nil))
	x.Mul(x, new(big.Rat).SetFrac(big.NewInt(int64(rate)), big.NewInt(1e6)))
	credits = roundHalfAway(x, 6)
	m := new(big.Rat).SetFrac(credits, big.NewInt(1e6))
	m.Mul(m, new(big.Rat).SetFrac(big.NewInt(valueNanos), big.NewInt(1e9)))
	return credits, roundHalfAway(m, 9)
}

func roundHalfAway(x *big.Rat, places int64) *big.Int {
	scaled := new(big.Rat).Mul(x, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(places), nil)))
	num, den := scaled.Num(), scaled.Denom()
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if new(big.Int).Mul(new(big.Int).Abs(r), big.NewInt(2)).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(int64(num.Sign())))
	}
	return q
}

func checkAgainstReference(t *testing.T, mant int64, scale uint8, rate credit.Amount, valueNanos int64) {
	q := Number{Mant: mant, Scale: scale}
	wantC, wantM := refRate(q, rate, valueNanos)
	credits, ok1 := mulDivRound(uint64(mant), uint64(rate), pow10[scale])
	money, ok2 := mulDivRound(credits, uint64(valueNanos), uint64(credit.Unit))
	if !ok1 || !wantC.IsUint64() || wantC.Uint64() > 1<<63-1 {
		if ok1 && wantC.IsUint64() {
			t.Fatalf("%d×10^-%d × %d: ok=%v but reference %s", mant, scale, rate, ok1, wantC)
		}
		return
	}
	if credits != wantC.Uint64() {
		t.Fatalf("%d×10^-%d × %s credits: got %d, reference %s", mant, scale, rate, credits, wantC)
	}
	if ok2 && money != wantM.Uint64() {
		t.Fatalf("credits %d × value %d: money %d, reference %s", credits, valueNanos, money, wantM)
	}
	if !ok2 && wantM.IsUint64() && wantM.Uint64() <= 1<<63-1 {
		t.Fatalf("credits %d × value %d: overflow reported but reference %s fits", credits, valueNanos, wantM)
	}
}

func TestRatingArithmeticProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200_000; i++ {
		mant := rng.Int64() >> uint(rng.IntN(63))
		scale := uint8(rng.IntN(MaxScale + 1))
		rate := credit.Amount(rng.Int64N(int64(credit.MaxAmount)>>uint(rng.IntN(50))) + 1)
		value := rng.Int64N(int64(1e15)>>uint(rng.IntN(45))) + 1
		checkAgainstReference(t, mant, scale, rate, value)
	}
}

func FuzzRatingArithmetic(f *testing.F) {
	f.Add(int64(1234), uint8(0), int64(1000), int64(40_000_000))
	f.Add(int64(15), uint8(4), int64(1000), int64(1))
	f.Add(int64(1<<63-1), uint8(18), int64(credit.MaxAmount), int64(1e15))
	f.Fuzz(func(t *testing.T, mant int64, scale uint8, rate, value int64) {
		if mant < 0 || rate <= 0 || rate > int64(credit.MaxAmount) || value <= 0 || value > 1e15 {
			return
		}
		checkAgainstReference(t, mant, scale%(MaxScale+1), credit.Amount(rate), value)
	})
}

func TestRateAllocatesNothing(t *testing.T) {
	_, tbl := compileSeed(t)
	r := NewRater(tbl)
	ev := Event{ID: "e", CustomerID: "acme", Name: "llm.call", Timestamp: t0, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("1234"), IsNum: true}}}
	buf := make([]Line, 0, 8)
	allocs := testing.AllocsPerRun(1000, func() {
		var err error
		if buf, err = r.Rate(&ev, buf[:0]); err != nil || len(buf) != 1 {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Rate allocates %v per event", allocs)
	}
}

func BenchmarkRate(b *testing.B) {
	_, tbl := compileSeed(b)
	r := NewRater(tbl)
	events := []Event{
		{ID: "e1", CustomerID: "acme", SubscriptionID: "sub-1", Name: "email.sent", Timestamp: t0},
		{ID: "e2", CustomerID: "acme", Name: "llm.call", Timestamp: t0, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: num("1234.5"), IsNum: true}}},
	}
	buf := make([]Line, 0, 8)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		buf, err = r.Rate(&events[i&1], buf[:0])
		if err != nil || len(buf) != 1 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// BenchmarkRateLargeCatalog rates against 100,000 subscriptions, resolving
// the subscription from the customer half of the time.
func BenchmarkRateLargeCatalog(b *testing.B) {
	c, _ := compileSeed(b)
	base := c.Subscriptions["sub-1"]
	const n = 100_000
	custs := make([]string, n)
	for i := 0; i < n; i++ {
		s := *base
		s.ID = "sub-" + strconv.Itoa(i)
		s.CustomerID = "cust-" + strconv.Itoa(i)
		custs[i] = s.CustomerID
		c.Subscriptions[s.ID] = &s
	}
	tbl, errs := Compile(c, 1)
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	events := make([]Event, 1024)
	for i := range events {
		k := (i * 7919) % n
		events[i] = Event{ID: "e", CustomerID: custs[k], Name: "llm.call", Timestamp: t0, Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: Number{Mant: int64(1000 + i)}, IsNum: true}}}
		if i%2 == 0 {
			events[i].SubscriptionID = "sub-" + strconv.Itoa(k)
		}
	}
	buf := make([]Line, 0, 8)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		buf, err = tbl.Rate(&events[i&1023], buf[:0])
		if err != nil || len(buf) != 1 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// BenchmarkCompile100k compiles a catalog of 100,000 subscriptions: the cost
// of one catalog refresh besides loading it.
func BenchmarkCompile100k(b *testing.B) {
	c, _ := compileSeed(b)
	base := c.Subscriptions["sub-1"]
	for i := 0; i < 100_000; i++ {
		s := *base
		s.ID, s.CustomerID = "bulk-"+strconv.Itoa(i), "cust-"+strconv.Itoa(i)
		c.Subscriptions[s.ID] = &s
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if t, errs := Compile(c, 1); len(errs) > 0 || t.Len() != 100_001 {
			b.Fatal(errs)
		}
	}
}

// Extending a table with subscriptions rates exactly like compiling the
// catalog that holds them.
func TestExtendMatchesCompile(t *testing.T) {
	c, _ := compileSeed(t)
	without, _ := Compile(c, 1)
	later := *c.Subscriptions["sub-1"]
	later.ID, later.StartAt = "sub-2", t0.Add(time.Hour)
	later.Consumption = []ConsumptionRate{{FeatureID: "ai-agent-email", CreditsPerUnit: credit.MustParse("0.25")}}
	other := *c.Subscriptions["sub-1"]
	other.ID, other.CustomerID = "sub-3", "globex"
	ext, errs := without.Extend(c, []*Subscription{&later, &other}, 2)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c.Subscriptions["sub-2"], c.Subscriptions["sub-3"] = &later, &other
	full, _ := Compile(c, 2)
	if ext.Len() != 3 || full.Len() != 3 || without.Len() != 1 || ext.Version() != 2 {
		t.Fatalf("lens %d %d %d", ext.Len(), full.Len(), without.Len())
	}
	for _, ev := range []Event{
		{CustomerID: "acme", Name: "email.sent", Timestamp: t0},
		{CustomerID: "acme", Name: "email.sent", Timestamp: t0.Add(2 * time.Hour)},
		{CustomerID: "globex", Name: "email.sent", Timestamp: t0},
		{CustomerID: "acme", SubscriptionID: "sub-1", Name: "email.sent", Timestamp: t0.Add(2 * time.Hour)},
	} {
		a, errA := ext.Rate(&ev, nil)
		b, errB := full.Rate(&ev, nil)
		if errA != errB || len(a) != len(b) || len(a) != 1 || a[0] != b[0] {
			t.Errorf("%+v: extended %+v %v, compiled %+v %v", ev, a, errA, b, errB)
		}
	}
	if lines, _ := ext.Rate(&Event{CustomerID: "acme", Name: "email.sent", Timestamp: t0.Add(2 * time.Hour)}, nil); lines[0].SubscriptionID != "sub-2" || lines[0].Credits != credit.MustParse("0.25") {
		t.Errorf("newest subscription not resolved: %+v", lines)
	}
	// The original table is unchanged.
	if _, err := without.Rate(&Event{CustomerID: "globex", Name: "email.sent", Timestamp: t0}, nil); !errors.Is(err, ErrNoActiveSubscription) {
		t.Errorf("Extend changed its receiver: %v", err)
	}
}

// An event stamped within the grace window before a customer's first
// subscription starts (a client's clock a moment behind, or the same second
// as a sub-second start) is charged to it; before a later subscription the
// earlier one keeps it.
func TestGraceBeforeFirstStart(t *testing.T) {
	c, _ := compileSeed(t)
	later := *c.Subscriptions["sub-1"]
	later.ID, later.StartAt, later.CreditValue = "sub-2", t0.Add(24*time.Hour), nil
	c.Subscriptions["sub-2"] = &later
	tbl, errs := Compile(c, 2)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r := NewRater(tbl)
	r.SetGraceWindow(15 * time.Minute)
	for _, tc := range []struct {
		sub  string
		at   time.Time
		want string
		err  error
	}{
		{"", t0.Add(-300 * time.Millisecond), "sub-1", nil},
		{"", t0.Add(-15 * time.Minute), "sub-1", nil},
		{"", t0.Add(-15*time.Minute - time.Millisecond), "", ErrNoActiveSubscription},
		{"", t0.Add(24*time.Hour - time.Second), "sub-1", nil}, // before the second: still the first
		{"sub-1", t0.Add(-time.Second), "sub-1", nil},
		{"sub-1", t0.Add(-time.Hour), "", ErrSubscriptionNotActive},
		{"sub-2", t0.Add(24*time.Hour - time.Second), "", ErrSubscriptionNotActive}, // not the first
	} {
		ev := &Event{CustomerID: "acme", SubscriptionID: tc.sub, Name: "email.sent", Timestamp: tc.at}
		lines, err := r.Rate(ev, nil)
		if !errors.Is(err, tc.err) || (tc.err == nil && (len(lines) != 1 || lines[0].SubscriptionID != tc.want)) {
			t.Errorf("event for %q at start%+v: %+v %v, want %s %v", tc.sub, tc.at.Sub(t0), lines, err, tc.want, tc.err)
		}
		if tc.sub == "" {
			if got, ok := r.Resolve("acme", tc.at); ok != (tc.err == nil) || got != tc.want {
				t.Errorf("Resolve at start%+v = %q %v, want %q", tc.at.Sub(t0), got, ok, tc.want)
			}
		}
	}
	// Without a grace window, the start is exact.
	if _, err := tbl.Rate(&Event{CustomerID: "acme", Name: "email.sent", Timestamp: t0.Add(-time.Millisecond)}, nil); !errors.Is(err, ErrNoActiveSubscription) {
		t.Errorf("no grace: %v", err)
	}
}

// A plan change: sub-1 ends at t0+24h and sub-2 starts then. Events at or
// after the end are the successor's; a late event stamped before the end
// still charges sub-1 until end + grace, after which its books are closed
// (subscription_ended). With no successor, events after the end are ended.
func TestSubscriptionEnd(t *testing.T) {
	c, _ := compileSeed(t)
	end := t0.Add(24 * time.Hour)
	c.Subscriptions["sub-1"].EndAt = &end
	later := *c.Subscriptions["sub-1"]
	later.ID, later.StartAt, later.EndAt, later.CreditValue = "sub-2", end, nil, nil
	c.Subscriptions["sub-2"] = &later
	tbl, errs := Compile(c, 2)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	now := end.Add(time.Minute)
	r := NewRater(tbl)
	r.SetGraceWindow(15 * time.Minute)
	r.SetClock(func() time.Time { return now })
	check := func(sub string, at time.Time, want string, wantErr error) {
		t.Helper()
		lines, err := r.Rate(&Event{CustomerID: "acme", SubscriptionID: sub, Name: "email.sent", Timestamp: at}, nil)
		if !errors.Is(err, wantErr) || (wantErr == nil && (len(lines) != 1 || lines[0].SubscriptionID != want)) {
			t.Errorf("event for %q at end%+v (now end%+v): %+v %v, want %s %v", sub, at.Sub(end), now.Sub(end), lines, err, want, wantErr)
		}
	}
	check("", end.Add(-time.Second), "sub-1", nil) // late, within grace: the old plan
	check("", end, "sub-2", nil)
	check("sub-1", end.Add(-time.Second), "sub-1", nil)
	check("sub-1", end, "", ErrSubscriptionEnded)
	now = end.Add(15 * time.Minute) // books closed
	check("", end.Add(-time.Second), "", ErrSubscriptionEnded)
	check("sub-1", end.Add(-time.Second), "", ErrSubscriptionEnded)
	check("", end.Add(time.Hour), "sub-2", nil)

	// The successor cancelled: nothing after its end.
	end2 := end.Add(48 * time.Hour)
	c.Subscriptions["sub-2"].EndAt = &end2
	tbl, _ = tbl.Extend(c, []*Subscription{c.Subscriptions["sub-2"]}, 3)
	r.Swap(tbl)
	now = end2.Add(time.Minute)
	check("", end2.Add(-time.Second), "sub-2", nil)
	check("", end2, "", ErrSubscriptionEnded)
	check("", end2.Add(100*24*time.Hour), "", ErrSubscriptionEnded)
	check("", t0.Add(-time.Hour), "", ErrNoActiveSubscription)
}

// After a gap (the customer's subscription ended), an event stamped up to
// the grace window before a new subscription starts is charged to it, as
// before a first subscription; with an active predecessor it stays the
// predecessor's (TestSubscriptionEnd).
func TestGraceBeforeStartAfterAGap(t *testing.T) {
	c, _ := compileSeed(t)
	end := t0.Add(time.Hour)
	c.Subscriptions["sub-1"].EndAt = &end
	later := *c.Subscriptions["sub-1"]
	later.ID, later.StartAt, later.EndAt, later.CreditValue = "sub-2", t0.Add(24*time.Hour), nil, nil
	c.Subscriptions["sub-2"] = &later
	tbl, errs := Compile(c, 2)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r := NewRater(tbl)
	r.SetGraceWindow(15 * time.Minute)
	r.SetClock(func() time.Time { return later.StartAt.Add(time.Minute) })
	for _, tc := range []struct {
		sub  string
		at   time.Time
		want string
		err  error
	}{
		{"", later.StartAt.Add(-time.Second), "sub-2", nil},
		{"sub-2", later.StartAt.Add(-time.Second), "sub-2", nil},
		{"", later.StartAt.Add(-16 * time.Minute), "", ErrSubscriptionEnded},
		{"sub-2", later.StartAt.Add(-16 * time.Minute), "", ErrSubscriptionNotActive},
	} {
		lines, err := r.Rate(&Event{CustomerID: "acme", SubscriptionID: tc.sub, Name: "email.sent", Timestamp: tc.at}, nil)
		if !errors.Is(err, tc.err) || (tc.err == nil && (len(lines) != 1 || lines[0].SubscriptionID != tc.want)) {
			t.Errorf("event for %q at start%+v: %+v %v, want %s %v", tc.sub, tc.at.Sub(later.StartAt), lines, err, tc.want, tc.err)
		}
	}
}
