package api_test

import (
	"strings"
	"testing"
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
	feature := func(meter string) string { return `{"id":"x","name":"X","meter":{"kind":"event_based","event_name":"e",` + meter + `}}` }
	plan := strings.Replace(strings.Replace(planJSON, `"ai-prepaid"`, `"p2"`, 1), `"feature_id":"ai-agent-email"`, `"feature_id":"peak-seats"`, 1)
	for _, tc := range []struct {
		name, path, body  string
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
