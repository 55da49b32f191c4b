package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Redis loses an archived top-up (its keys put back as they were before):
// reconcile exits non-zero and says Redis is behind the archive, in text
// and JSON; --repair rebuilds it from the archive and reconcile exits 0.
func TestReconcileRepairsRedisThatLostWrites(t *testing.T) {
	st := apptest.Stores(t)
	rc, cc, prefix, store, acc := st.RC, st.CC, st.Prefix, st.Balances, st.Accounts
	ctx := context.Background()
	const sub = "lw"
	if _, err := store.OpenAccount(ctx, balance.AccountSpec{Subscription: sub, Customer: "c", Policy: balance.Unfunded, Currency: "USD", CreditValue: decimal.NewFromInt(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: sub, Amount: credit.Credits(10)}, "c"); err != nil {
		t.Fatal(err)
	}
	keys, err := testenv.Keys(ctx, rc, prefix+"{"+sub+"}*")
	if err != nil {
		t.Fatal(err)
	}
	dumps := map[string]string{}
	for _, k := range keys {
		if dumps[k], err = rc.Dump(ctx, k).Result(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := acc.TopUp(ctx, balance.TopUpRequest{Key: "t2", Subscription: sub, Amount: credit.Credits(5)}, "c"); err != nil {
		t.Fatal(err)
	}
	now, _ := testenv.Keys(ctx, rc, prefix+"{"+sub+"}*")
	rc.Del(ctx, now...)
	for k, d := range dumps {
		if err := rc.Restore(ctx, k, 0, d).Err(); err != nil {
			t.Fatal(err)
		}
	}

	env := []string{"CREDITMETER_CLICKHOUSE_DATABASE=" + cc.Database, "CREDITMETER_CLICKHOUSE_ADDR=" + cc.Addr, "CREDITMETER_REDIS_ADDR=" + testenv.Config(t).Redis.Addr}
	args := []string{"reconcile", "--subscription", sub, "--redis-key-prefix", prefix, "--lag", "0s"}
	out, err := run(t, env, args...)
	if err == nil || !strings.Contains(out, "1 with drift (balance 1, extra 1, redis_behind 1)") || !strings.Contains(out, sub+": redis behind the archive (lost writes): archive's last seq 2, redis's 1") {
		t.Fatalf("lost writes: err %v\n%s", err, out)
	}
	out, err = run(t, env, append(args, "--json")...)
	var rep struct {
		Drift []struct {
			Classes     []string `json:"classes"`
			RedisBehind bool     `json:"redis_behind"`
		} `json:"drift"`
	}
	if jerr := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); err == nil || jerr != nil || len(rep.Drift) != 1 || !rep.Drift[0].RedisBehind ||
		rep.Drift[0].Classes[0] != "redis_behind" {
		t.Fatalf("--json: err %v %v\n%s", err, jerr, out)
	}
	if out, err = run(t, env, append(args, "--repair")...); err != nil || !strings.Contains(out, sub+": redis rebuilt from the archive") || !strings.Contains(out, "0 with drift") {
		t.Fatalf("repair: err %v\n%s", err, out)
	}
	if out, err = run(t, env, append(args, "--deep")...); err != nil || !strings.Contains(out, "0 with drift") {
		t.Fatalf("after repair: err %v\n%s", err, out)
	}
	v, err := store.Balance(ctx, sub)
	if err != nil || v.Total != credit.Credits(15) {
		t.Fatalf("balance after repair %s (%v), want 15", v.Total, err)
	}
}
