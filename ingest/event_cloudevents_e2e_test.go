package ingest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Issue 18 item 3: CloudEvents through the real broker, Redis and ClickHouse
// — structured on Kafka (with and without the content-type header), binary
// on Kafka (ce_* headers), and POST /v1/events with both CloudEvents content
// types — each charged exactly once, under producer retries and under a
// full redelivery of the topic, with bad CloudEvents dead-lettered `invalid`
// naming the attribute.
func TestCloudEventsEndToEnd(t *testing.T) {
	h := e2e.New(t, 2)
	h.Subscribe(3)
	at := h.Seeded.Add(time.Second).UTC().Format(time.RFC3339Nano)
	expect := func(cust, id string, credits credit.Amount) {
		e := h.Subs[cust]
		e.Events[id] = credits
		e.Usage += credits
	}
	ceJSON := []kafka.Header{{Key: "content-type", Value: []byte("application/cloudevents+json; charset=utf-8")}}

	structured := kafka.Message{Key: []byte("cust-000"), Headers: ceJSON, Value: []byte(`{"specversion":"1.0","id":"a-1","source":"//agents/mailer","type":"email.sent","subject":"cust-000","time":"` + at + `","datacontenttype":"application/json","data":{"agent":"outreach-bot"}}`)}
	expect("cust-000", "//agents/mailer|a-1", credit.Credits(1))
	// No content-type header: recognised by its specversion attribute.
	bare := kafka.Message{Key: []byte("cust-001"), Value: []byte(`{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","specversion":"1.0","type":"llm.call","source":"//agents/llm","id":"b-1","time":"` + at + `","subject":"cust-001","data":{"tokens":1500,"model":"m-1"}}`)}
	expect("cust-001", "//agents/llm|b-1", credit.MustParse("1.5"))
	binary := kafka.Message{Key: []byte("cust-002"), Value: []byte(`{"tokens":2000}`), Headers: []kafka.Header{
		{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("c-1")}, {Key: "ce_source", Value: []byte("//agents/llm")},
		{Key: "ce_type", Value: []byte("llm.call")}, {Key: "ce_subject", Value: []byte("cust-002")}, {Key: "ce_time", Value: []byte(at)},
		{Key: "content-type", Value: []byte("application/json")}, {Key: "traceparent", Value: []byte("00-x")}}}
	expect("cust-002", "//agents/llm|c-1", credit.Credits(2))
	// The same id from another source is another event.
	otherSource := kafka.Message{Key: []byte("cust-000"), Value: []byte(`{"specversion":"1.0","id":"a-1","source":"//agents/other","type":"email.sent","subject":"cust-000","time":"` + at + `"}`)}
	expect("cust-000", "//agents/other|a-1", credit.Credits(1))
	retryBinary := binary
	retryBinary.Headers = append([]kafka.Header{binary.Headers[6]}, binary.Headers[:6]...) // other header order
	badVersion := kafka.Message{Key: []byte("cust-000"), Value: []byte(`{"specversion":"0.3","id":"d-1","source":"//agents/mailer","type":"email.sent","subject":"cust-000","time":"` + at + `"}`)}
	noSubject := kafka.Message{Key: []byte("cust-002"), Value: []byte(`{"tokens":1}`), Headers: []kafka.Header{
		{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("e-1")}, {Key: "ce_source", Value: []byte("//agents/llm")},
		{Key: "ce_type", Value: []byte("llm.call")}, {Key: "ce_time", Value: []byte(at)}}}
	msgs := []kafka.Message{structured, bare, binary, structured, otherSource, retryBinary, badVersion, noSubject}

	// POST /v1/events: one structured CloudEvent, then a batch (with a
	// retry of the first and a retry of a Kafka-produced event).
	w := ingest.NewWriters([]string{h.Broker.Addr()}, e2e.Topic, e2e.DLQTopic)
	defer w.Close()
	hs := httptest.NewServer(api.NewServer(api.Options{Catalog: h.Catalog, Events: w, AdminTokens: []string{"adm"}}))
	defer hs.Close()
	post := func(ct, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", hs.URL+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer adm")
		req.Header.Set("Content-Type", ct)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: status %d", ct, res.StatusCode)
		}
	}
	single := `{"specversion":"1.0","id":"h-1","source":"https://app.example/api","type":"email.sent","subject":"cust-001","time":"` + at + `"}`
	expect("cust-001", "https://app.example/api|h-1", credit.Credits(1))
	post("application/cloudevents+json", single)
	post("application/cloudevents-batch+json", `[`+single+`,
	  {"specversion":"1.0","id":"h-2","source":"https://app.example/api","type":"llm.call","subject":"cust-002","time":"`+at+`","data":{"tokens":250}},
	  `+string(bare.Value)+`]`)
	expect("cust-002", "https://app.example/api|h-2", credit.MustParse("0.25"))
	h.Produce(msgs)
	total := len(msgs) + 4

	e, m, src := h.NewEngine("ce-first", engine.Config{})
	stop := runEngine(t, e)
	e2e.WaitConsumed(t, m, total, 2*time.Minute)
	stop()
	src.Close()
	if got := testutil.ToFloat64(m.Applied); got != 6 {
		t.Errorf("applied %v events, want 6", got)
	}
	if got := testutil.ToFloat64(m.Duplicates.WithLabelValues("id")); got != 4 {
		t.Errorf("duplicate ids %v, want 4 (two Kafka retries, two API retries)", got)
	}
	h.Verify()
	ids := archivedIDs(t, h, h.Subs["cust-000"].Sub)
	if strings.Join(ids, " ") != "//agents/mailer|a-1 //agents/other|a-1" {
		t.Errorf("rated_usage event ids of cust-000: %q", ids)
	}
	fields := deadFields(t, h, 2)
	if fields["specversion"] != ingest.ReasonInvalid || fields["ce_subject"] != ingest.ReasonInvalid {
		t.Errorf("dead letters by field: %v, want specversion and ce_subject invalid", fields)
	}

	// Redelivery: a new consumer group reads the whole topic again.
	e, m, src = h.NewEngine("ce-again", engine.Config{})
	defer src.Close()
	stop = runEngine(t, e)
	e2e.WaitConsumed(t, m, total, 2*time.Minute)
	stop()
	if got := testutil.ToFloat64(m.Applied); got != 0 {
		t.Errorf("redelivery applied %v events, want 0", got)
	}
	h.Verify()
}

func runEngine(t *testing.T, e *engine.Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine stopped with %v", err)
		}
	}
}

func archivedIDs(t *testing.T, h *e2e.Harness, sub string) []string {
	t.Helper()
	rows, err := h.Conn.Query(context.Background(), "SELECT event_id FROM rated_usage FINAL WHERE subscription_id = ?", sub)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// deadFields reads n dead letters: field → reason.
func deadFields(t *testing.T, h *e2e.Harness, n int) map[string]string {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{h.Broker.Addr()}, Topic: e2e.DLQTopic, GroupID: "dlq-" + testenv.RandomID(t),
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]string{}
	for range n {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var field, reason string
		for _, hd := range msg.Headers {
			switch hd.Key {
			case ingest.HeaderField:
				field = string(hd.Value)
			case ingest.HeaderReason:
				reason = string(hd.Value)
			}
		}
		out[field] = reason
	}
	return out
}
