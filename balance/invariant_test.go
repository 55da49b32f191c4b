package balance

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"
)

// dumpSub is every key of sub a script may write (the journal of partition
// 0 included), as DUMP gives it ("" for none): equal dumps, nothing written.
func (e *env) dumpSub(sub string) map[string]string {
	e.t.Helper()
	keys := append(e.s.applyKeys(&Batch{Subscription: sub, Topic: "usage-events"}).list(), e.s.lowKey(sub))
	pipe := e.rc.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Dump(e.ctx, k)
	}
	if _, err := pipe.Exec(e.ctx); err != nil && !errors.Is(err, redis.Nil) {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for i, k := range keys {
		out[k] = cmds[i].Val()
	}
	return out
}

func (e *env) sameDump(before map[string]string, sub string) {
	e.t.Helper()
	for k, v := range e.dumpSub(sub) {
		if before[k] != v {
			e.t.Errorf("%s was written by a refused call", k)
		}
	}
}

// setGrantField sets field i (0 type, 2 remaining) of grant id's encoding
// and returns the old encoding.
func (e *env) setGrantField(sub, id string, i int, v string) string {
	e.t.Helper()
	k := e.s.keys(sub).Grants
	old, err := e.rc.HGet(e.ctx, k, id).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	p := strings.Split(old, "|")
	p[i] = v
	e.rc.HSet(e.ctx, k, id, strings.Join(p, "|"))
	return old
}

// Issue 19 item 6: a subscription whose stored books are broken (balance ≠
// Σ remaining − debt, a negative or unreadable remainder) is refused by
// every script with ErrInvariant before anything is written: ledger,
// idempotency record, watermark, journal, dedupe sets and account stay as
// they were, and once the books are mended the same call goes through.
func TestBrokenBooksAreRefused(t *testing.T) {
	corruptions := map[string]func(e *env, sub string) (undo func()){
		"balance off by 1 µcredit": func(e *env, sub string) func() {
			e.rc.HIncrBy(e.ctx, e.s.keys(sub).Account, "bal", 1)
			return func() { e.rc.HIncrBy(e.ctx, e.s.keys(sub).Account, "bal", -1) }
		},
		"remaining off by 1 µcredit": func(e *env, sub string) func() {
			rem := int64(c(90))
			old := e.setGrantField(sub, "g1", 2, fmt.Sprint(rem+1))
			return func() { e.rc.HSet(e.ctx, e.s.keys(sub).Grants, "g1", old) }
		},
		"negative remaining, sum kept": func(e *env, sub string) func() {
			old := e.setGrantField(sub, "g1", 2, "-1")
			e.rc.HSet(e.ctx, e.s.keys(sub).Account, "bal", "-1")
			return func() {
				e.rc.HSet(e.ctx, e.s.keys(sub).Grants, "g1", old)
				e.rc.HSet(e.ctx, e.s.keys(sub).Account, "bal", fmt.Sprint(int64(c(90))))
			}
		},
		"unreadable grant": func(e *env, sub string) func() {
			old := e.setGrantField(sub, "g1", 2, "ninety")
			return func() { e.rc.HSet(e.ctx, e.s.keys(sub).Grants, "g1", old) }
		},
	}
	later := t0.Add(time.Minute)
	calls := map[string]func(e *env, sub string) error{
		"Apply": func(e *env, sub string) error {
			res, err := e.s.Apply(e.ctx, []Batch{batch(sub, 0, line("e2", 2, later, c(5)))})
			if err == nil && res[0].Lines[0].Status != Applied {
				return fmt.Errorf("line %+v, want applied", res[0].Lines[0])
			}
			if (err == nil) != (res[0].Err == nil) {
				return fmt.Errorf("Apply error %v, batch error %v", err, res[0].Err)
			}
			return err
		},
		"TopUp": func(e *env, sub string) error {
			_, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t1", Subscription: sub, Amount: c(20)})
			return err
		},
		"Grant": func(e *env, sub string) error {
			_, err := e.s.Grant(e.ctx, GrantRequest{Key: "promo", Subscription: sub, Type: Promotional, Amount: c(5)})
			return err
		},
		"Adjust": func(e *env, sub string) error {
			_, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a1", Subscription: sub, Amount: -c(3), Reason: "r", Actor: "ops"})
			return err
		},
		"Expire": func(e *env, sub string) error {
			_, err := e.s.Expire(e.ctx, sub)
			return err
		},
		"OpenAccount": func(e *env, sub string) error {
			_, err := e.s.OpenAccount(e.ctx, AccountSpec{Subscription: sub, Customer: "cust-" + sub, Policy: Overage,
				LowThreshold: c(50), Currency: "USD", CreditValue: decimal.RequireFromString("0.04")})
			return err
		},
	}
	for cname, corrupt := range corruptions {
		for name, call := range calls {
			t.Run(cname+"/"+name, func(t *testing.T) {
				e := newEnv(t, 0)
				e.clock.Set(later)
				sub := "sub-books"
				e.open(sub, Overage)
				e.grant(sub, "included", Promotional, c(100), t0, time.Time{})
				e.apply(batch(sub, 0, line("e1", 1, later, c(10))))
				undo := corrupt(e, sub)
				before := e.dumpSub(sub)
				err := call(e, sub)
				if !errors.Is(err, ErrInvariant) || !strings.Contains(err.Error(), "CMINVARIANT") {
					t.Fatalf("%s on broken books: %v, want ErrInvariant", name, err)
				}
				e.sameDump(before, sub)
				undo()
				if err := call(e, sub); err != nil {
					t.Fatalf("%s after the books are mended: %v", name, err)
				}
				e.checkLedger(sub)
			})
		}
	}
}

// finish() checks the books the call computed before it writes them: a
// script whose arithmetic broke them (a bug) fails with ErrInvariant and
// writes no ledger entry, grant or account field.
func TestFinishRefusesBrokenBooks(t *testing.T) {
	bugs := map[string]string{
		"balance moved alone": `bal = bal - 1
ledger('usage', -1, {})`,
		"remaining below zero": `local g = grants[1]
bal = bal - g.rem - 1
ledger('usage', -(g.rem + 1), {})
g.rem, g.dirty = -1, true`,
	}
	common, err := luaFS.ReadFile("lua/common.lua")
	if err != nil {
		t.Fatal(err)
	}
	for name, bug := range bugs {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 0)
			sub := "sub-bug"
			e.open(sub, Unfunded)
			e.grant(sub, "included", Promotional, c(100), t0, time.Time{})
			before := e.dumpSub(sub)
			sc := redis.NewScript(string(common) + "\nload()\n" + bug + "\nfinish()\nreturn 'written'\n")
			_, err := e.s.run(e.ctx, sc, e.s.keys(sub).list(), e.s.nowMs(), e.s.grace)
			if !errors.Is(err, ErrInvariant) {
				t.Fatalf("a script that broke the books: %v, want ErrInvariant", err)
			}
			e.sameDump(before, sub)
			e.checkLedger(sub)
		})
	}
}

// Repair rebuilds the account from the archive's last snapshot: one whose
// books are broken is refused before anything is written.
func TestRepairRefusesBrokenSnapshot(t *testing.T) {
	e := newEnv(t, 0)
	sub := "sub-snap"
	e.open(sub, Overage)
	e.grant(sub, "included", Promotional, c(100), t0, time.Time{})
	e.apply(batch(sub, 0, line("e1", 1, t0, c(10))))
	archived := e.checkLedger(sub)
	last := &archived[len(archived)-1]
	var snap map[string]map[string]string
	if err := json.Unmarshal([]byte(last.Snapshot), &snap); err != nil {
		t.Fatal(err)
	}
	snap["a"]["bal"] = fmt.Sprint(int64(c(90)) + 1)
	js, _ := json.Marshal(snap)
	last.Snapshot = string(js)
	before := e.dumpSub(sub)
	_, err := e.s.Repair(e.ctx, repairSpec(sub, last.Seq, last.Seq-1, archived))
	if !errors.Is(err, ErrInvariant) {
		t.Fatalf("repair from a broken snapshot: %v, want ErrInvariant", err)
	}
	e.sameDump(before, sub)
}
