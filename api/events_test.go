package api_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

func TestPostEventsProducesValidItems(t *testing.T) {
	rc := testenv.Redis(t)
	store, err := catalogstore.New(rc, testenv.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{Catalog: store, Events: w, AdminTokens: []string{admin}})))
	defer hs.Close()
	e := &env{t: t, url: hs.URL}

	body := `{"events":[
	  {"id":"e1","customer_id":"acme","event_name":"email.sent","timestamp":"2026-11-27T10:00:00Z"},
	  {"id":"e2","customer_id":"acme","event_name":"email.sent","timestamp":"yesterday"},
	  {"id":"e3","customer_id":"acme","event_name":"llm.call","timestamp":"2026-11-27T10:00:01Z","dimensions":{"tokens":1500}},
	  {"customer_id":"acme","event_name":"email.sent","timestamp":"2026-11-27T10:00:00Z"}
	]}`
	r := e.must(202, "POST", "/v1/events", admin, body)
	if r.body["accepted"] != float64(2) {
		t.Fatalf("accepted: %s", r.raw)
	}
	rej := r.body["rejected"].([]any)
	if len(rej) != 2 {
		t.Fatalf("rejected: %s", r.raw)
	}
	first := rej[0].(map[string]any)
	if first["index"] != float64(1) || first["error"].(map[string]any)["field"] != "events[1].timestamp" {
		t.Errorf("rejected[0]: %v", first)
	}
	if f := rej[1].(map[string]any)["error"].(map[string]any)["field"]; f != "events[3].id" {
		t.Errorf("rejected[1] field %v", f)
	}
	r = e.must(400, "POST", "/v1/events", admin, `{"events":[{"id":"x"}]}`)
	if _, f, _ := r.err(); f != "events[0].customer_id" {
		t.Errorf("all invalid: %s", r.raw)
	}
	e.must(400, "POST", "/v1/events", admin, `{"events":[]}`)
	e.must(400, "POST", "/v1/events", admin, `{"evnts":[]}`)
	e.must(401, "POST", "/v1/events", "", body)

	// The two valid events are on the topic, keyed by customer.
	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: "usage-events", GroupID: "check", StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < 2 {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != "acme" {
			t.Errorf("key %q", m.Key)
		}
		got[string(m.Value)] = true
	}
	if !got[`{"id":"e1","customer_id":"acme","event_name":"email.sent","timestamp":"2026-11-27T10:00:00Z"}`] {
		t.Errorf("produced %v", got)
	}
}

// Issue 13.8: a batch of more than the broker's limit for one partition (one
// customer) is split into produce requests that fit, and accepted.
func TestPostEventsSplitsBatchOverBrokerLimit(t *testing.T) {
	rc := testenv.Redis(t)
	store, err := catalogstore.New(rc, testenv.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	testenv.SetBrokerMaxMessageBytes(t, b.Addr(), 1_048_588)
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{Catalog: store, Events: w, AdminTokens: []string{admin}})))
	defer hs.Close()
	e := &env{t: t, url: hs.URL}

	// 1,500 events of ~2.1 kB of random (incompressible) text, all for one
	// customer, so one partition: about 3.2 MB.
	const n = 1500
	var body strings.Builder
	body.WriteString(`{"events":[`)
	for i := range n {
		noise := make([]byte, 1520)
		if _, err := rand.Read(noise); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"id":"big-%d","customer_id":"acme","event_name":"email.sent","timestamp":"2026-11-27T10:00:00Z","dimensions":{"a":%q,"b":%q}}`,
			i, base64.StdEncoding.EncodeToString(noise[:760]), base64.StdEncoding.EncodeToString(noise[760:]))
	}
	body.WriteString("]}")
	if body.Len() < 3_000_000 {
		t.Fatalf("body of %d bytes is too small for the test", body.Len())
	}
	r := e.must(202, "POST", "/v1/events", admin, body.String())
	if r.body["accepted"] != float64(n) {
		t.Fatalf("accepted: %v", r.body["accepted"])
	}

	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: "usage-events", GroupID: "check", StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < n {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %d of %d: %v", len(got), n, err)
		}
		got[string(m.Value)] = true
	}
}

// Events stamped beyond the future skew are refused as the engine would
// dead-letter them (issue 13 item 2), naming the field.
func TestPostEventsRefusesFutureTimestamps(t *testing.T) {
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
	soon := time.Now().UTC().Add(2 * time.Minute).Format(time.RFC3339Nano)
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339Nano)
	for _, ts := range []string{tomorrow, "2200-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2106-02-07T06:28:16Z", "1969-12-31T23:59:59Z"} {
		r := e.must(400, "POST", "/v1/events", admin, `{"events":[{"id":"f","customer_id":"acme","event_name":"email.sent","timestamp":"`+ts+`"}]}`)
		rej := r.body["rejected"].([]any)
		if _, f, _ := r.err(); f != "events[0].timestamp" || len(rej) != 1 {
			t.Errorf("%s: %s", ts, r.raw)
		}
	}
	r := e.must(202, "POST", "/v1/events", admin, `{"events":[{"id":"s","customer_id":"acme","event_name":"email.sent","timestamp":"`+soon+`"}]}`)
	if r.body["accepted"] != float64(1) {
		t.Errorf("2 minutes ahead: %s", r.raw)
	}
}
