package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
)

// TestMeterAggregationsAndFilters: the API accepts every aggregation and
// filter operator, names the field of a bad one, and refuses to map a
// reporting meter to credits with the seed's message.
func TestMeterAggregationsAndFilters(t *testing.T) {
	e := newEnv(t)
	e.seed()
	for _, body := range []string{
		`{"id":"active-users","name":"Active users","meter":{"kind":"event_based","event_name":"login","aggregation":"UNIQUE_COUNT","dimension":"user_id",
		  "filters":[{"key":"env","op":"not_in","values":["test","staging"]},{"key":"region","op":"in","values":["eu","us"]},{"key":"plan","op":"exists"},{"key":"tier","op":"eq","value":"pro"}]}}`,
		`{"id":"peak-seats","name":"Peak seats","meter":{"kind":"event_based","event_name":"seats","aggregation":"MAX","dimension":"n"}}`,
		`{"id":"last-seats","name":"Seats","meter":{"kind":"event_based","event_name":"seats","aggregation":"LATEST","dimension":"n"}}`,
		`{"id":"avg-ms","name":"Latency","meter":{"kind":"event_based","event_name":"llm.call","aggregation":"AVG","dimension":"ms"}}`,
	} {
		e.must(201, "POST", "/v1/features", admin, body)
	}
	r := e.must(200, "GET", "/v1/features/active-users", admin, "")
	if !strings.Contains(r.raw, `"op":"not_in","values":["test","staging"]`) || !strings.Contains(r.raw, `"aggregation":"UNIQUE_COUNT"`) {
		t.Errorf("feature read back: %s", r.raw)
	}
	feature := func(meter string) string {
		return `{"id":"x","name":"X","meter":{"kind":"event_based","event_name":"e",` + meter + `}}`
	}
	plan := strings.Replace(strings.Replace(planJSON, `"ai-prepaid"`, `"p2"`, 1), `"feature_id":"ai-agent-email"`, `"feature_id":"peak-seats"`, 1)
	for _, tc := range []struct {
		name, path, body   string
		code, field, msgIn string
	}{
		{"unique without dimension", "/v1/features", feature(`"aggregation":"UNIQUE_COUNT"`), "required", "meter.dimension", "UNIQUE_COUNT"},
		{"unknown aggregation", "/v1/features", feature(`"aggregation":"MEDIAN","dimension":"n"`), "invalid", "meter.aggregation", "MEDIAN"},
		{"unknown op", "/v1/features", feature(`"aggregation":"COUNT","filters":[{"key":"k","op":"like","value":"a"}]`), "invalid", "meter.filters[0].op", "like"},
		{"in without values", "/v1/features", feature(`"aggregation":"COUNT","filters":[{"key":"k","op":"in"}]`), "required", "meter.filters[0].values", ""},
		{"exists with a value", "/v1/features", feature(`"aggregation":"COUNT","filters":[{"key":"k","op":"exists","value":"a"}]`), "invalid", "meter.filters[0].op", ""},
		{"plan maps a reporting meter", "/v1/plans", plan, "meter_reporting_only", "prepaid.consumption[0].feature_id", "Only event-based meters are currently supported for credit consumption mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", tc.path, admin, tc.body)
			code, field, msg := r.err()
			if r.status != 400 || code != tc.code || field != tc.field || !strings.Contains(msg, tc.msgIn) {
				t.Errorf("got %d %s", r.status, r.raw)
			}
		})
	}
}

// TestMeterValuesFromTheArchive: GET …/meters/{feature_id} answers a
// reporting meter (MAX, LATEST, AVG) and a UNIQUE_COUNT from rated_usage,
// whole or per window, and names the field of a bad query.
func TestMeterValuesFromTheArchive(t *testing.T) {
	st := apptest.StoresWith(t, app.Options{})
	srv := api.NewServer(api.Options{Catalog: st.Catalog, Ledger: st.Accounts, Balances: st.Accounts, Reports: archive.Reports{Conn: st.Conn}, AdminTokens: []string{admin}})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}
	e.seed()
	e.must(201, "POST", "/v1/features", admin, `{"id":"peak","name":"Seats","meter":{"kind":"event_based","event_name":"seats","aggregation":"MAX","dimension":"n"}}`)
	e.must(201, "POST", "/v1/features", admin, `{"id":"last","name":"Seats","meter":{"kind":"event_based","event_name":"seats","aggregation":"LATEST","dimension":"n"}}`)
	e.must(201, "POST", "/v1/features", admin, `{"id":"avg","name":"Seats","meter":{"kind":"event_based","event_name":"seats","aggregation":"AVG","dimension":"n"}}`)
	id := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "s").body["id"].(string)
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var rows []archive.RatedRow
	for i, n := range []string{"3", "8", "1.5", "4"} { // two on March 1st, two on the 2nd
		for j, f := range []string{"peak", "last", "avg"} {
			rows = append(rows, archive.RatedRow{EventID: fmt.Sprint("s", i), Line: uint16(j), CustomerID: "acme", SubscriptionID: id, Feature: f, EventName: "seats",
				Quantity: decimal.RequireFromString(n), CreditCurrency: "AIT", MoneyCurrency: "USD", EventTime: day.Add(time.Duration(i) * 12 * time.Hour),
				RatedAt: day, Status: archive.StatusApplied, Topic: "t", Offset: int64(i)})
		}
	}
	if err := st.Writer.WriteUsage(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	base := "/v1/subscriptions/" + id + "/meters/"
	for _, tc := range []struct{ path, want string }{
		{"peak?from=2026-03-01&to=2026-03-03", `"8"`},
		{"peak?from=2026-03-01&to=2026-03-03&window=day", `"8" "4"`},
		{"last?from=2026-03-01&to=2026-03-03", `"4"`},
		{"last?from=2026-03-01&to=2026-03-02", `"8"`},
		{"avg?from=2026-03-01&to=2026-03-03", `"4.125"`},
		{"avg?from=2026-03-05&to=2026-03-06", `<nil>`},
	} {
		r := e.must(200, "GET", base+tc.path, admin, "")
		var got []string
		for _, v := range r.body["values"].([]any) {
			got = append(got, fmt.Sprintf("%q", v.(map[string]any)["value"]))
		}
		if g := strings.Join(got, " "); g != strings.ReplaceAll(tc.want, "<nil>", "%!q(<nil>)") {
			t.Errorf("%s: %s", tc.path, r.raw)
		}
	}
	for _, tc := range []struct{ path, status, field string }{
		{"peak?from=2026-03-01&to=2026-03-03&window=week", "400", "window"},
		{"peak?from=2026-03-03&to=2026-03-01", "400", "from"},
		{"nope?from=2026-03-01&to=2026-03-03", "404", "feature_id"},
	} {
		r := e.do("GET", base+tc.path, admin, "")
		if _, field, _ := r.err(); fmt.Sprint(r.status) != tc.status || field != tc.field {
			t.Errorf("%s: %d %s", tc.path, r.status, r.raw)
		}
	}
}
