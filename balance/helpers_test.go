package balance

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct{ ms atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.ms.Store(t.UnixMilli()); return c }
func (c *clock) Now() time.Time      { return time.UnixMilli(c.ms.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func (c *clock) Set(t time.Time)     { c.ms.Store(t.UnixMilli()) }

type env struct {
	t     *testing.T
	rc    redis.UniversalClient
	s     *Store
	clock *clock
	ctx   context.Context
	pfx   string
}

func newEnv(t *testing.T, grace time.Duration) *env {
	t.Helper()
	rc := testRedis(t)
	pfx := testenv.Prefix(t)
	c := newClock(t0)
	s, err := New(rc, Options{Prefix: pfx, GraceWindow: grace, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, rc: rc, s: s, clock: c, ctx: context.Background(), pfx: pfx}
	t.Cleanup(func() { cleanup(rc, pfx) })
	return e
}

func cleanup(rc redis.UniversalClient, pfx string) {
	testenv.DeletePrefix(context.Background(), rc, pfx)
}

// clusterSuite runs the store's tests again on Redis Cluster: newEnv gives
// its subtests a cluster client.
const clusterSuite = "TestStoreOnRedisCluster/"

func testRedis(t *testing.T) redis.UniversalClient {
	t.Helper()
	if strings.HasPrefix(t.Name(), clusterSuite) {
		return testenv.RedisCluster(t)
	}
	return testenv.Redis(t)
}

func (e *env) open(sub string, policy Policy, mod ...func(*AccountSpec)) {
	e.t.Helper()
	a := AccountSpec{Subscription: sub, Customer: "cust-" + sub, Policy: policy, Currency: "USD", CreditValue: decimal.RequireFromString("0.04")}
	for _, m := range mod {
		m(&a)
	}
	if _, err := e.s.OpenAccount(e.ctx, a); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) grant(sub, key string, typ GrantType, amt credit.Amount, eff, exp time.Time) ChangeResult {
	e.t.Helper()
	r, err := e.s.Grant(e.ctx, GrantRequest{Key: key, Subscription: sub, Type: typ, Amount: amt, EffectiveAt: eff, ExpiresAt: exp})
	if err != nil {
		e.t.Fatalf("grant %s: %v", key, err)
	}
	return r
}

func (e *env) apply(bs ...Batch) []BatchResult {
	e.t.Helper()
	r, err := e.s.Apply(e.ctx, bs)
	if err != nil {
		e.t.Fatalf("apply: %v", err)
	}
	return r
}

func (e *env) balance(sub string) BalanceView {
	e.t.Helper()
	v, err := e.s.Balance(e.ctx, sub)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) ledger(sub string) []Entry {
	e.t.Helper()
	var all []Entry
	for from := int64(1); ; {
		es, err := e.s.Ledger(e.ctx, sub, from, 500)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(es) == 0 {
			return all
		}
		all = append(all, es...)
		from = es[len(es)-1].Seq + 1
	}
}

// checkLedger asserts the invariant: sequence numbers 1..n without gaps,
// each entry's balance is the running sum, and the sum is the balance.
func (e *env) checkLedger(sub string) []Entry {
	e.t.Helper()
	es := e.ledger(sub)
	var sum credit.Amount
	for i, x := range es {
		if x.Seq != int64(i+1) {
			e.t.Fatalf("ledger seq %d at position %d", x.Seq, i)
		}
		sum += x.Amount
		if x.Balance != sum {
			e.t.Fatalf("ledger entry %d (%s %s): balance %s, running sum %s", x.Seq, x.Kind, x.Amount, x.Balance, sum)
		}
	}
	if v := e.balance(sub); v.Total != sum {
		e.t.Fatalf("sum(ledger) = %s, balance = %s", sum, v.Total)
	}
	return es
}

func line(id string, off int64, ts time.Time, credits credit.Amount) Line {
	return Line{EventID: id, Offset: off, Time: ts, Credits: credits}
}

func batch(sub string, part int32, lines ...Line) Batch {
	return Batch{Subscription: sub, Topic: "usage-events", Partition: part, Lines: lines}
}

func draws(ds ...any) []Draw {
	var out []Draw
	for i := 0; i < len(ds); i += 2 {
		out = append(out, Draw{Grant: ds[i].(string), Amount: ds[i+1].(credit.Amount)})
	}
	return out
}

func sameDraws(a, b []Draw) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

var c = credit.Credits
