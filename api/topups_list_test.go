package api_test

import (
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
)

// GET …/topups lists a subscription's pending (and ended) top-ups, so an
// admin finds the ones waiting for payment (an auto-recharge's too),
// paged by id, filtered by status, for the customer as well.
func TestListPendingTopUps(t *testing.T) {
	st := apptest.Stores(t)
	srv := api.NewServer(api.Options{Catalog: st.Catalog, Ledger: st.Accounts, Balances: st.Accounts, Reports: archive.Reports{Conn: st.Conn}, AdminTokens: []string{admin}})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}
	e.seed()
	e.must(201, "POST", "/v1/plans", admin, payPlan)
	id := e.must(201, "POST", "/v1/subscriptions", admin, strings.Replace(seedSub, `"plan_id":"ai-prepaid"`, `"plan_id":"ai-pay"`, 1), "Idempotency-Key", "c").body["id"].(string)
	base := "/v1/subscriptions/" + id
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	if l := e.must(200, "GET", base+"/topups", admin, ""); len(l.body["data"].([]any)) != 0 {
		t.Fatalf("empty list: %s", l.raw)
	}
	var ids []string
	for _, k := range []string{"a", "b", "c"} {
		ids = append(ids, e.must(202, "POST", base+"/topups", tok, `{"amount":"300"}`, "Idempotency-Key", k).body["id"].(string))
	}
	e.must(200, "POST", base+"/topups/"+ids[1]+"/confirm", admin, "")
	sort.Strings(ids)
	all := e.must(200, "GET", base+"/topups", tok, "")
	var got []string
	statuses := map[string]int{}
	for _, x := range all.body["data"].([]any) {
		m := x.(map[string]any)
		got = append(got, m["id"].(string))
		statuses[m["status"].(string)]++
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") || statuses["pending"] != 2 || statuses["confirmed"] != 1 {
		t.Fatalf("list %v (%v), want %v", got, statuses, ids)
	}
	pend := e.must(200, "GET", base+"/topups?status=pending&limit=1", admin, "")
	d := pend.body["data"].([]any)
	cur, _ := pend.body["next_cursor"].(string)
	if len(d) != 1 || d[0].(map[string]any)["status"] != "pending" || cur == "" {
		t.Fatalf("first page of pending: %s", pend.raw)
	}
	next := e.must(200, "GET", base+"/topups?status=pending&limit=1&cursor="+cur, admin, "")
	if d2 := next.body["data"].([]any); len(d2) != 1 || d2[0].(map[string]any)["id"] == d[0].(map[string]any)["id"] || next.body["next_cursor"] != nil {
		t.Fatalf("second page of pending: %s", next.raw)
	}
	if _, f, _ := e.must(400, "GET", base+"/topups?status=paid", admin, "").err(); f != "status" {
		t.Fatalf("bad status: field %q", f)
	}
	e.must(404, "GET", "/v1/subscriptions/nope/topups", admin, "")
}
