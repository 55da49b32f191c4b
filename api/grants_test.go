package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
)

// newBalanceEnvOpts is newBalanceEnv with balance options, and the Redis
// client and key prefix for tests that look at (or damage) what is stored.
func newBalanceEnvOpts(t *testing.T, o balance.Options) (*env, *redis.Client, string) {
	t.Helper()
	st := apptest.StoresWith(t, app.Options{Balance: o})
	rc, prefix, conn, store, acc := st.RC.(*redis.Client), st.Prefix, st.Conn, st.Catalog, st.Accounts
	srv := api.NewServer(api.Options{Catalog: store, Ledger: acc, Balances: acc, Reports: archive.Reports{Conn: conn}, AdminTokens: []string{admin}})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	return &env{t: t, url: hs.URL, srv: srv}, rc, prefix
}

// Issue 13 item 3: 300,000,000 credits granted, 150,000,000 deducted was
// applied but answered 500, and so was its replay.
func TestLargeAdjustmentAnsweredAndReplayedOnce(t *testing.T) {
	e, rc, prefix := newBalanceEnvOpts(t, balance.Options{})
	e.seed()
	id := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1").body["id"].(string)
	base := "/v1/subscriptions/" + id
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"300000000","reason":"bulk","actor":"ops"}`, "Idempotency-Key", "big-add")
	const deduct = `{"amount":"-150000000","reason":"bulk","actor":"ops"}`
	first := e.must(201, "POST", base+"/adjustments", admin, deduct, "Idempotency-Key", "big-deduct")
	if first.body["balance"] != "150000100" {
		t.Fatalf("deduction: %s", first.raw)
	}
	again := e.must(200, "POST", base+"/adjustments", admin, deduct, "Idempotency-Key", "big-deduct")
	if again.body["replayed"] != true || again.body["seq"] != first.body["seq"] || again.body["balance"] != "150000100" {
		t.Fatalf("replay: %s, first %s", again.raw, first.raw)
	}
	if b := e.must(200, "GET", base+"/balance", admin, ""); b.body["total"] != "150000100" {
		t.Fatalf("deducted more than once: %s", b.raw)
	}

	// A stored result that cannot be read (as the old script wrote it) is a
	// clear error saying the change was applied, not an anonymous 500.
	k := prefix + "{" + id + "}:i"
	rec, err := rc.HGet(context.Background(), k, "adjust:big-deduct").Result()
	if err != nil {
		t.Fatal(err)
	}
	rc.HSet(context.Background(), k, "adjust:big-deduct", rec[:strings.LastIndex(rec, "|")+1]+"g2,1.5e+14")
	r := e.must(500, "POST", base+"/adjustments", admin, deduct, "Idempotency-Key", "big-deduct")
	if code, _, msg := r.err(); code != "unreadable_result" || !strings.Contains(msg, "was applied") || !strings.Contains(msg, "new Idempotency-Key") {
		t.Fatalf("unreadable result: %s", r.raw)
	}
	if b := e.must(200, "GET", base+"/balance", admin, ""); b.body["total"] != "150000100" {
		t.Fatalf("balance after the unreadable replay: %s", b.raw)
	}
}

// Issue 13 item 9: live grants per subscription are capped (422
// too_many_grants), and the balance's grant list is paged.
func TestGrantCapAndGrantPaging(t *testing.T) {
	e, _, _ := newBalanceEnvOpts(t, balance.Options{MaxGrants: 5})
	e.seed()
	id := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1").body["id"].(string)
	base := "/v1/subscriptions/" + id
	for i := 0; i < 4; i++ { // the included credits are the first grant
		e.must(201, "POST", base+"/adjustments", admin, `{"amount":"0.000001","reason":"r","actor":"ops"}`, "Idempotency-Key", fmt.Sprint("a", i))
	}
	r := e.must(422, "POST", base+"/adjustments", admin, `{"amount":"0.000001","reason":"r","actor":"ops"}`, "Idempotency-Key", "a-over")
	if code, field, msg := r.err(); code != "too_many_grants" || field != "amount" || !strings.Contains(msg, "5 active grants") {
		t.Fatalf("grant beyond the cap: %s", r.raw)
	}
	r = e.must(422, "POST", base+"/topups", admin, `{"amount":"250"}`, "Idempotency-Key", "t-over")
	if code, _, _ := r.err(); code != "too_many_grants" {
		t.Fatalf("top-up beyond the cap: %s", r.raw)
	}
	// A deduction is no grant; it uses up grants, which makes room.
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"-100.000002","reason":"r","actor":"ops"}`, "Idempotency-Key", "d")
	e.must(201, "POST", base+"/topups", admin, `{"amount":"250"}`, "Idempotency-Key", "t-over")

	// 3 live grants now (two tiny adjustments, the top-up), paged by 2.
	all := e.must(200, "GET", base+"/balance", admin, "")
	grants := all.body["grants"].([]any)
	if len(grants) != 3 || all.body["grants_total"] != float64(3) || all.body["next_offset"] != nil {
		t.Fatalf("balance: %s", all.raw)
	}
	var paged []any
	for off := 0; ; {
		p := e.must(200, "GET", fmt.Sprintf("%s/balance?limit=2&offset=%d", base, off), admin, "")
		paged = append(paged, p.body["grants"].([]any)...)
		if p.body["total"] != all.body["total"] || p.body["grants_total"] != float64(3) || len(p.body["grants"].([]any)) > 2 {
			t.Fatalf("page at %d: %s", off, p.raw)
		}
		n, ok := p.body["next_offset"].(float64)
		if !ok {
			break
		}
		off = int(n)
	}
	if fmt.Sprint(paged) != fmt.Sprint(grants) {
		t.Fatalf("pages %v\nall %v", paged, grants)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "offset=-1", "offset=y"} {
		r := e.must(400, "GET", base+"/balance?"+q, admin, "")
		if _, field, _ := r.err(); field != strings.Split(q, "=")[0] {
			t.Errorf("%s: %s", q, r.raw)
		}
	}
}

// A change that would take the balance past ±9,000,000,000 credits is a
// 422 out_of_range saying so in the API's words, not the script's error
// code or a Go identifier.
func TestOutOfRangeNamesTheLimit(t *testing.T) {
	e, _, _ := newBalanceEnvOpts(t, balance.Options{})
	e.seed()
	id := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1").body["id"].(string)
	base := "/v1/subscriptions/" + id
	check := func(r resp) {
		t.Helper()
		code, field, msg := r.err()
		if code != "out_of_range" || field != "amount" || !strings.Contains(msg, "9,000,000,000") ||
			strings.Contains(msg, "CMRANGE") || strings.Contains(msg, "credit.") || strings.Contains(msg, "balance: ") {
			t.Errorf("out of range: %s", r.raw)
		}
	}
	check(e.must(422, "POST", base+"/adjustments", admin, `{"amount":"8999999999","reason":"r"}`, "Idempotency-Key", "up"))
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"-9000000000","reason":"r","force":true}`, "Idempotency-Key", "down-1")
	check(e.must(422, "POST", base+"/adjustments", admin, `{"amount":"-1000","reason":"r","force":true}`, "Idempotency-Key", "down-2"))
}
