package api_test

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/webhook"
)

// Issue 18.4: every list takes limit and an opaque cursor and answers
// next_cursor; pages follow by key, so entries created between two pages
// never repeat nor shift one (an entry sorting before the cursor is not
// seen, one after is).
func TestListsPage(t *testing.T) {
	st := apptest.Stores(t)
	hooks, err := webhook.NewStore(st.RC, st.Prefix, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(api.Options{Catalog: st.Catalog, Ledger: st.Accounts, Balances: st.Accounts, Reports: archive.Reports{Conn: st.Conn},
		AdminTokens: []string{admin}, Webhooks: hooks})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}
	e.seed()

	// walk reads path page by page (limit 2), calling between(page) after
	// each, and returns the ids seen in order.
	walk := func(path, list, id string, between func(page int)) []string {
		t.Helper()
		var seen []string
		cursor := ""
		for page := 0; page < 50; page++ {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			r := e.must(200, "GET", path+sep+"limit=2&cursor="+url.QueryEscape(cursor), admin, "")
			items := r.body[list].([]any)
			if len(items) > 2 {
				t.Fatalf("%s: a page of %d with limit 2", path, len(items))
			}
			for _, x := range items {
				seen = append(seen, fmt.Sprint(x.(map[string]any)[id]))
			}
			if between != nil {
				between(page)
			}
			next, _ := r.body["next_cursor"].(string)
			if next == "" {
				return seen
			}
			cursor = next
		}
		t.Fatalf("%s: no last page", path)
		return nil
	}
	expect := func(what string, got []string, want string) {
		t.Helper()
		if strings.Join(got, ",") != want {
			t.Errorf("%s: pages saw %s, want %s", what, strings.Join(got, ","), want)
		}
	}

	// Customers: acme, globex, then c-1..c-4; one created before the cursor, one after, during the walk.
	for i := 1; i <= 4; i++ {
		e.must(201, "POST", "/v1/customers", admin, fmt.Sprintf(`{"id":"c-%d","name":"C %d"}`, i, i))
	}
	expect("customers", walk("/v1/customers", "data", "id", func(page int) {
		if page == 1 {
			e.must(201, "POST", "/v1/customers", admin, `{"id":"c-0","name":"before the cursor"}`)
			e.must(201, "POST", "/v1/customers", admin, `{"id":"zeta","name":"after the cursor"}`)
		}
	}), "acme,c-1,c-2,c-3,c-4,globex,zeta")
	expect("currencies", walk("/v1/currencies", "data", "code", nil), "AIT")
	expect("features", walk("/v1/features", "data", "id", nil), "ai-agent-email,storage")
	expect("plans", walk("/v1/plans", "data", "id", nil), "ai-prepaid")

	// Subscriptions, the customer's subscriptions, tokens, the ledger.
	var subs []string
	for i := 0; i < 3; i++ {
		body := strings.Replace(seedSub, `"customer_id":"acme"`, fmt.Sprintf(`"customer_id":"c-%d"`, i+1), 1)
		subs = append(subs, e.must(201, "POST", "/v1/subscriptions", admin, body, "Idempotency-Key", fmt.Sprint("s-", i)).body["id"].(string))
	}
	acme := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "s-acme").body["id"].(string)
	all := append(append([]string{}, subs...), acme)
	sort.Strings(all)
	expect("subscriptions", walk("/v1/subscriptions", "data", "id", nil), strings.Join(all, ","))
	expect("acme's subscriptions", walk("/v1/customers/acme/subscriptions", "data", "id", nil), acme)
	var toks []string
	for i := 0; i < 3; i++ {
		e.must(201, "POST", "/v1/customers/acme/tokens", admin, "")
	}
	for _, x := range e.must(200, "GET", "/v1/customers/acme/tokens?limit=1000", admin, "").body["data"].([]any) {
		toks = append(toks, x.(map[string]any)["id"].(string))
	}
	sort.Strings(toks)
	expect("tokens", walk("/v1/customers/acme/tokens", "data", "id", nil), strings.Join(toks, ","))
	base := "/v1/subscriptions/" + acme
	for i := 0; i < 3; i++ {
		e.must(201, "POST", base+"/topups", admin, `{"amount":"300"}`, "Idempotency-Key", fmt.Sprint("t-", i))
	}
	expect("ledger", walk(base+"/ledger", "entries", "seq", func(page int) {
		if page == 0 {
			e.must(201, "POST", base+"/topups", admin, `{"amount":"300"}`, "Idempotency-Key", "t-late")
		}
	}), "1,2,3,4,5")
	var hookIDs []string
	for i := 0; i < 3; i++ {
		hookIDs = append(hookIDs, e.must(201, "POST", "/v1/webhooks", admin, fmt.Sprintf(`{"url":"https://h%d.example/x","events":["topup.created"]}`, i)).body["id"].(string))
	}
	sort.Strings(hookIDs)
	expect("webhooks", walk("/v1/webhooks", "data", "id", nil), strings.Join(hookIDs, ","))

	// Bad limits and cursors name the parameter.
	for _, p := range []string{"/v1/customers?limit=0", "/v1/plans?limit=1001", "/v1/features?cursor=nope", "/v1/webhooks?cursor=%21%21",
		"/v1/customers/acme/tokens?limit=x", base + "/ledger?cursor=bm9wZQ", base + "/ledger?from_seq=1&cursor=c2VxOjI"} {
		r := e.do("GET", p, admin, "")
		field := "cursor"
		if strings.Contains(p, "limit") {
			field = "limit"
		}
		if _, f, _ := r.err(); r.status != 400 || f != field {
			t.Errorf("%s: %d %s, want 400 naming %s", p, r.status, r.raw, field)
		}
	}
}
