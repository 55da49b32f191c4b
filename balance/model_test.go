package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
)

// model is the Go reference of the scripts' state machine, built on book.
type model struct {
	book
	policy Policy
	limit  *credit.Amount // debt limit; nil: none
	seq    int64
	wm     map[string]int64
	seen   map[string]bool
	uniq   map[string]bool // UNIQUE_COUNT memory: meter@period@value
	// journal is the first result of each applied line by source and
	// offset; nothing is committed in this test, so every one is kept.
	journal map[string]LineResult
}

func (m *model) sweep(now int64) { m.seq += int64(len(m.book.sweep(now, m.Grace))) }

func (m *model) grant(now int64, typ GrantType, amt credit.Amount, eff, exp int64) string {
	m.sweep(now)
	m.seq++
	id := fmt.Sprint("g", m.seq)
	m.Grants = append(m.Grants, &bucket{ID: id, Type: typ, Amount: amt, Remaining: amt, Effective: eff, Expires: exp, Seq: m.seq})
	m.sort()
	m.settle(now)
	return id
}

func (m *model) deduct(now int64, amt credit.Amount, force bool) ([]Draw, error) {
	m.sweep(now)
	m.settle(now)
	if amt > m.available(now) && !force {
		return nil, ErrInsufficientBalance
	}
	d, left := m.draw(now, amt)
	m.Debt += left
	m.seq++
	return d, nil
}

func (m *model) apply(now int64, b Batch) []LineResult {
	m.sweep(now)
	m.settle(now)
	src := b.source()
	wm, ok := m.wm[src]
	if !ok {
		wm = -1
	}
	var out []LineResult
	applied := false
	for _, l := range b.Lines {
		switch {
		case src != "" && l.Offset <= wm:
			lr, ok := m.journal[fmt.Sprint(src, "@", l.Offset)]
			if !ok {
				out = append(out, LineResult{Status: DuplicateOffset})
				continue
			}
			lr.Status, lr.Journaled = DuplicateOffset, true
			out = append(out, lr)
			continue
		case m.seen[l.EventID]:
			out = append(out, LineResult{Status: DuplicateID})
		default:
			m.seen[l.EventID] = true
			applied = true
			var rep credit.Amount
			var mask uint64
			for i, u := range l.Unique {
				k := fmt.Sprint(u.Meter, "@", u.Period.UnixMilli(), "@", u.Value)
				if u.PeriodEnd.Add(UniqueKeep).UnixMilli() <= now || m.uniq[k] {
					rep, mask = rep+u.Credits, mask|1<<i
				} else {
					m.uniq[k] = true
				}
			}
			lr := m.use(l.Time.UnixMilli(), now, m.Grace, l.Credits-rep, m.policy, m.limit)
			lr.Repeats = mask
			if src != "" {
				m.journal[fmt.Sprint(src, "@", l.Offset)] = lr
			}
			out = append(out, lr)
		}
		m.wm[src] = max(m.wm[src], l.Offset)
	}
	if applied {
		m.seq++
	}
	m.settle(now)
	return out
}

// TestScriptsMatchModel runs random grants, usage, deductions and clock
// moves through the Lua scripts and the Go model and compares every
// result and the grants after each step.
func TestScriptsMatchModel(t *testing.T) {
	limit := c(15)
	for _, tc := range []struct {
		name   string
		policy Policy
		limit  *credit.Amount
	}{{"overage", Overage, nil}, {"unfunded", Unfunded, nil}, {"overage-debt-limit", Overage, &limit}} {
		policy := tc.policy
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 15*time.Minute)
			s, err := New(e.rc, Options{Prefix: e.pfx, GraceWindow: 15 * time.Minute, DedupeWindow: 48 * time.Hour, Now: e.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			e.s = s
			sub := "model-" + tc.name
			e.open(sub, policy, func(a *AccountSpec) { a.DebtLimit = tc.limit })
			m := &model{book: book{Grace: (15 * time.Minute).Milliseconds()}, policy: policy, limit: tc.limit, wm: map[string]int64{}, seen: map[string]bool{}, uniq: map[string]bool{}, journal: map[string]LineResult{}}
			r := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
			types := []GrantType{Promotional, Purchased, Adjustment}
			amt := func() credit.Amount { return credit.Amount(r.Int64N(int64(c(20)))) + 1 }
			offsets := map[int32]int64{}
			nextID := 0
			for step := 0; step < 400; step++ {
				now := e.clock.Now()
				nms := now.UnixMilli()
				switch k := r.IntN(10); {
				case k < 2:
					typ := types[r.IntN(3)]
					eff := now.Add(time.Duration(r.IntN(180)-120) * time.Minute)
					var exp time.Time
					if r.IntN(3) > 0 {
						exp = eff.Add(time.Duration(10+r.IntN(300)) * time.Minute)
					}
					a := amt()
					got := e.grant(sub, fmt.Sprint("k", step), typ, a, eff, exp)
					if want := m.grant(nms, typ, a, eff.UnixMilli(), ms(exp)); got.GrantID != want || got.Balance != m.balance() {
						t.Fatalf("step %d grant: %+v, model %s %s", step, got, want, m.balance())
					}
				case k < 3:
					a := amt()
					force := r.IntN(2) == 0
					got, err := s.Adjust(e.ctx, AdjustRequest{Key: fmt.Sprint("k", step), Subscription: sub, Amount: -a, Reason: "r", Actor: "a", Force: force})
					want, werr := m.deduct(nms, a, force)
					if !errors.Is(err, werr) || (err == nil && (!sameDraws(got.Draws, want) || got.Balance != m.balance())) {
						t.Fatalf("step %d deduct %s: %+v %v, model %v %v", step, a, got, err, want, werr)
					}
				case k < 4:
					e.clock.Add(time.Duration(r.IntN(20)) * time.Minute)
				default:
					p := int32(r.IntN(3))
					b := Batch{Subscription: sub, Topic: "t", Partition: p}
					if r.IntN(5) == 0 {
						offsets[p] = max(0, offsets[p]-int64(r.IntN(4))) // a redelivery overlaps
					}
					for i := 0; i < 1+r.IntN(8); i++ {
						id := fmt.Sprint("e", nextID)
						if nextID > 0 && r.IntN(6) == 0 {
							id = fmt.Sprint("e", r.IntN(nextID)) // a producer duplicate
						} else {
							nextID++
						}
						offsets[p]++
						ts := now.Add(time.Duration(r.IntN(40)-30) * time.Minute)
						ln := Line{EventID: id, Offset: offsets[p], Time: ts, Credits: credit.Amount(r.Int64N(int64(c(6))))}
						for u := r.IntN(4) - 1; u > 0; u-- { // UNIQUE_COUNT parts, some values repeated
							per := t0.AddDate(0, r.IntN(2)*-3+r.IntN(2), 0) // the current, next or an expired period
							part := UniquePart{Meter: fmt.Sprint("m", u), Period: per, PeriodEnd: per.AddDate(0, 1, 0), Value: fmt.Sprint("v", r.IntN(5)), Credits: credit.Amount(r.Int64N(int64(c(3))))}
							ln.Unique = append(ln.Unique, part)
							ln.Credits += part.Credits
						}
						b.Lines = append(b.Lines, ln)
					}
					got := e.apply(b)[0]
					want := m.apply(nms, b)
					for i := range want {
						if fmt.Sprint(got.Lines[i]) != fmt.Sprint(want[i]) {
							t.Fatalf("step %d line %d: %+v, model %+v", step, i, got.Lines[i], want[i])
						}
					}
					if got.Balance != m.balance() || got.Debt != m.Debt {
						t.Fatalf("step %d: balance %s debt %s, model %s %s", step, got.Balance, got.Debt, m.balance(), m.Debt)
					}
				}
				// Grants (live ones) and their remainders agree.
				v := e.balance(sub)
				var live []string
				for _, g := range m.Grants {
					if g.Remaining > 0 {
						live = append(live, fmt.Sprint(g.ID, ":", g.Remaining))
					}
				}
				var got []string
				for _, g := range v.Grants {
					got = append(got, fmt.Sprint(g.ID, ":", g.Remaining))
				}
				sort.Strings(live)
				sort.Strings(got)
				if fmt.Sprint(live) != fmt.Sprint(got) || v.Total != m.balance() {
					t.Fatalf("step %d grants %v, model %v", step, got, live)
				}
			}
			es := e.checkLedger(sub)
			if int64(len(es)) != m.seq {
				t.Fatalf("ledger has %d entries, model %d", len(es), m.seq)
			}
		})
	}
}
