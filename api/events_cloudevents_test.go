package api_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// Issue 18 item 3: POST /v1/events takes a structured CloudEvent
// (application/cloudevents+json) and a CloudEvents batch
// (application/cloudevents-batch+json), validated as the engine decodes
// them and produced as structured CloudEvents keyed by subject.
func TestPostCloudEvents(t *testing.T) {
	rc := testenv.Redis(t)
	store, err := catalogstore.New(rc, testenv.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{Catalog: store, Events: w, AdminTokens: []string{admin}})))
	defer hs.Close()
	e := &env{t: t, url: hs.URL}
	const single, batch = "application/cloudevents+json", "application/cloudevents-batch+json"

	one := `{"specversion":"1.0","id":"e1","source":"//svc/a","type":"email.sent","subject":"acme","time":"2026-11-27T10:00:00Z",
	  "data":{"agent":"bot"}}`
	r := e.must(202, "POST", "/v1/events", admin, one, "Content-Type", single)
	if r.body["accepted"] != float64(1) {
		t.Fatalf("single: %s", r.raw)
	}
	r = e.must(400, "POST", "/v1/events", admin, `{"specversion":"0.3","id":"e1","source":"//svc/a","type":"email.sent","subject":"acme","time":"2026-11-27T10:00:00Z"}`, "Content-Type", single)
	if code, field, _ := r.err(); code != "invalid" || field != "specversion" {
		t.Errorf("wrong specversion: %s", r.raw)
	}
	r = e.must(400, "POST", "/v1/events", admin, `{"specversion":"1.0","id":"e1","source":"//svc/a","type":"email.sent","subject":"acme","time":"2026-11-27T10:00:00Z","customer_id":"acme"}`, "Content-Type", single)
	if code, field, _ := r.err(); code != "invalid" || field != "customer_id" {
		t.Errorf("creditmeter field in a CloudEvent: %s", r.raw)
	}
	e.must(400, "POST", "/v1/events", admin, `[`+one+`]`, "Content-Type", single)

	r = e.must(202, "POST", "/v1/events", admin, `[
	  {"specversion":"1.0","id":"e2","source":"//svc/a","type":"llm.call","subject":"acme","time":"2026-11-27T10:00:01Z","data":{"tokens":1500}},
	  {"specversion":"1.0","id":"e3","source":"//svc/a","type":"llm.call","time":"2026-11-27T10:00:01Z"},
	  {"specversion":"1.0","id":"e4","source":"//svc/b","type":"email.sent","subject":"globex","time":"2026-11-27T10:00:02Z","comexampleext":"x"}
	]`, "Content-Type", batch)
	if r.body["accepted"] != float64(2) {
		t.Fatalf("batch: %s", r.raw)
	}
	rej := r.body["rejected"].([]any)
	if len(rej) != 1 || rej[0].(map[string]any)["error"].(map[string]any)["field"] != "[1].subject" {
		t.Errorf("batch rejected: %s", r.raw)
	}
	r = e.must(400, "POST", "/v1/events", admin, `[{"specversion":"1.0"}]`, "Content-Type", batch)
	if _, field, _ := r.err(); field != "[0].id" {
		t.Errorf("all invalid: %s", r.raw)
	}
	e.must(400, "POST", "/v1/events", admin, `[]`, "Content-Type", batch)
	e.must(400, "POST", "/v1/events", admin, one, "Content-Type", batch)
	// A creditmeter event is not a CloudEvent.
	e.must(400, "POST", "/v1/events", admin, `{"id":"x","customer_id":"acme","event_name":"email.sent","timestamp":"2026-11-27T10:00:00Z"}`, "Content-Type", single)

	// Valid requests are valid to openapi.yaml too (the full contract
	// checks requests as well as responses).
	full := httptest.NewServer(newContract(t).wrap(api.NewServer(api.Options{Catalog: store, Events: w, AdminTokens: []string{admin}})))
	defer full.Close()
	fe := &env{t: t, url: full.URL}
	fe.must(202, "POST", "/v1/events", admin, one, "Content-Type", single)
	fe.must(202, "POST", "/v1/events", admin, `[`+one+`,{"specversion":"1.0","id":"e5","source":"//svc/a","type":"llm.call","subject":"acme",
	  "time":"2026-11-27T10:00:01Z","subscriptionid":"sub-1","traceparent":"00-1","sampled":true,"data":{"tokens":1,"model":"m"}}]`, "Content-Type", batch)

	// The events are on the topic, structured, keyed by subject, and the
	// engine's decoder reads them with source|id as the event id.
	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: "usage-events", GroupID: "check", StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string]string{}
	for n := 0; n < 6; n++ {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ct string
		for _, h := range m.Headers {
			if h.Key == "content-type" {
				ct = string(h.Value)
			}
		}
		if ct != single {
			t.Errorf("content-type header %q", ct)
		}
		var ev rating.Event
		if err := ingest.DecodeMessage(&m, &ev); err != nil {
			t.Fatalf("%s: %v", m.Value, err)
		}
		if string(m.Key) != ev.CustomerID {
			t.Errorf("key %q for subject %q", m.Key, ev.CustomerID)
		}
		got[ev.ID] = ev.Name
	}
	if len(got) != 4 || got["//svc/a|e1"] != "email.sent" || got["//svc/a|e2"] != "llm.call" || got["//svc/b|e4"] != "email.sent" || got["//svc/a|e5"] != "llm.call" {
		t.Errorf("produced %v", got)
	}
}
