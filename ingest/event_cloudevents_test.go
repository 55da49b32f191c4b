package ingest_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

const goodCE = `{"specversion":"1.0","id":"ev-1","source":"//agents.example.com/mailer","type":"email.sent","subject":"cust-1","time":"2026-11-27T10:00:00.123Z","datacontenttype":"application/json","data":{"tokens":1500,"model":"gpt","ratio":"0.25"}}`

func binaryHeaders(kv ...string) []kafka.Header {
	h := make([]kafka.Header, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, kafka.Header{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return h
}

var goodBinary = binaryHeaders("ce_specversion", "1.0", "ce_id", "ev-1", "ce_source", "//agents.example.com/mailer", "ce_type", "email.sent",
	"ce_subject", "cust-1", "ce_time", "2026-11-27T10:00:00.123Z", "content-type", "application/json")

const goodBinaryValue = `{"tokens":1500,"model":"gpt","ratio":"0.25"}`

// checkMapped checks the README's mapping of goodCE / goodBinary.
func checkMapped(t *testing.T, ev *rating.Event) {
	t.Helper()
	if ev.ID != "//agents.example.com/mailer|ev-1" || ev.CustomerID != "cust-1" || ev.Name != "email.sent" || ev.SubscriptionID != "" {
		t.Fatalf("mapped %+v", ev)
	}
	if !ev.Timestamp.Equal(time.Date(2026, 11, 27, 10, 0, 0, 123e6, time.UTC)) {
		t.Errorf("time %v", ev.Timestamp)
	}
	tok, ok := ev.Dim("tokens")
	if !ok || !tok.IsNum || !tok.Num.Equal(rating.NumberOf(1500)) {
		t.Errorf("tokens %+v", tok)
	}
	if m, _ := ev.Dim("model"); m.IsNum || m.Str != "gpt" {
		t.Errorf("model %+v", m)
	}
	if r, _ := ev.Dim("ratio"); r.IsNum || r.Str != "0.25" {
		t.Errorf("ratio %+v", r)
	}
	if len(ev.Dims) != 3 {
		t.Errorf("dims %+v", ev.Dims)
	}
}

func TestCloudEventMapping(t *testing.T) {
	var ev rating.Event
	if err := ingest.DecodeCloudEvent([]byte(goodCE), &ev); err != nil {
		t.Fatal(err)
	}
	checkMapped(t, &ev)
	if err := ingest.DecodeCloudEventBinary(goodBinary, []byte(goodBinaryValue), &ev); err != nil {
		t.Fatal(err)
	}
	checkMapped(t, &ev)

	// Through DecodeMessage: structured with and without content-type,
	// binary, and creditmeter's own JSON beside them.
	for name, m := range map[string]kafka.Message{
		"structured":                {Value: []byte(goodCE), Headers: binaryHeaders("content-type", "application/cloudevents+json; charset=UTF-8")},
		"structured, sniffed":       {Value: []byte(goodCE)},
		"structured, other headers": {Value: []byte(goodCE), Headers: binaryHeaders("traceparent", "00-1", "content-type", "application/json")},
		"binary":                    {Value: []byte(goodBinaryValue), Headers: goodBinary},
	} {
		ev = rating.Event{}
		if err := ingest.DecodeMessage(&m, &ev); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkMapped(t, &ev)
	}
	m := kafka.Message{Value: []byte(good)}
	if err := ingest.DecodeMessage(&m, &ev); err != nil || ev.ID != "ev-1" || ev.CustomerID != "cust-1" {
		t.Fatalf("own JSON through DecodeMessage: %v %+v", err, ev)
	}

	// Optional parts: no data, null data, subscriptionid, extensions of every
	// scalar kind, an offset time, escapes.
	in := ` { "specversion" : "1.0", "id":"a\"b", "source":"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "type":"llm.call",
	  "subject":"c", "time":"2026-11-27T10:00:00+02:00", "subscriptionid":"sub-9", "traceparent":"00-ab", "sampled":true,
	  "retries":3, "nothing":null, "dataschema":"https://example.com/s.json", "data":null } `
	if err := ingest.DecodeCloudEvent([]byte(in), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != `urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66|a"b` || ev.SubscriptionID != "sub-9" || len(ev.Dims) != 0 ||
		!ev.Timestamp.Equal(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("decoded %+v", ev)
	}
	h := binaryHeaders("ce_specversion", "1.0", "ce_id", "x", "ce_source", "/s", "ce_type", "t", "ce_subject", "c",
		"ce_time", "2026-11-27T10:00:00Z", "ce_subscriptionid", "sub-9", "ce_traceparent", "00")
	if err := ingest.DecodeCloudEventBinary(h, nil, &ev); err != nil || ev.SubscriptionID != "sub-9" || ev.ID != "/s|x" || len(ev.Dims) != 0 {
		t.Fatalf("binary without data: %v %+v", err, ev)
	}
}

func TestCloudEventRejects(t *testing.T) {
	const base = `"id":"a","source":"/s","type":"e","subject":"c","time":"2026-11-27T10:00:00Z"`
	cases := []struct {
		in, reason, field string
	}{
		{`not json`, ingest.ReasonMalformed, ""},
		{`[` + goodCE + `]`, ingest.ReasonMalformed, ""},
		{goodCE + `x`, ingest.ReasonMalformed, ""},
		{`{` + base + `}`, ingest.ReasonInvalid, "specversion"},
		{`{"specversion":"0.3",` + base + `}`, ingest.ReasonInvalid, "specversion"},
		{`{"specversion":1.0,` + base + `}`, ingest.ReasonInvalid, "specversion"},
		{`{"specversion":"1.0","specversion":"1.0",` + base + `}`, ingest.ReasonInvalid, "specversion"},
		{`{"specversion":"1.0","source":"/s","type":"e","subject":"c","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
		{`{"specversion":"1.0","id":"","source":"/s","type":"e","subject":"c","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
		{`{"specversion":"1.0","id":"a","type":"e","subject":"c","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "source"},
		{`{"specversion":"1.0","id":"a","source":"/my service","type":"e","subject":"c","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "source"},
		{`{"specversion":"1.0","id":"a","source":"/s|x","type":"e","subject":"c","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "source"},
		{`{"specversion":"1.0","id":"a","source":"/s","subject":"c","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "type"},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"e","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "subject"},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"e","subject":null,"time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "subject"},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"e","subject":"c"}`, ingest.ReasonInvalid, "time"},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"e","subject":"c","time":"yesterday"}`, ingest.ReasonInvalid, "time"},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"e","subject":"c","time":"1969-12-31T23:59:59Z"}`, ingest.ReasonInvalid, "time"},
		{`{"specversion":"1.0",` + base + `,"customer_id":"c"}`, ingest.ReasonInvalid, "customer_id"},
		{`{"specversion":"1.0",` + base + `,"Subject":"c"}`, ingest.ReasonInvalid, "Subject"},
		{`{"specversion":"1.0",` + base + `,"dimensions":{"tokens":1}}`, ingest.ReasonInvalid, "dimensions"},
		{`{"specversion":"1.0",` + base + `,"ext":[1]}`, ingest.ReasonInvalid, "ext"},
		{`{"specversion":"1.0",` + base + `,"ext":"1","ext":"2"}`, ingest.ReasonInvalid, "ext"},
		{`{"specversion":"1.0",` + base + `,"datacontenttype":"application/xml","data":{"x":1}}`, ingest.ReasonInvalid, "datacontenttype"},
		{`{"specversion":"1.0",` + base + `,"data_base64":"eyJ4IjoxfQ=="}`, ingest.ReasonInvalid, "data_base64"},
		{`{"specversion":"1.0",` + base + `,"data":"text"}`, ingest.ReasonInvalid, "data"},
		{`{"specversion":"1.0",` + base + `,"data":{"x":true}}`, ingest.ReasonInvalid, "data.x"},
		{`{"specversion":"1.0",` + base + `,"data":{"x":{"y":1}}}`, ingest.ReasonInvalid, "data.x"},
		{`{"specversion":"1.0",` + base + `,"data":{"x":1},"data":{"x":1}}`, ingest.ReasonInvalid, "data"},
		{`{"specversion":"1.0",` + base + `,"subscriptionid":""}`, ingest.ReasonInvalid, "subscriptionid"},
		{`{"specversion":"1.0","id":"` + strings.Repeat("a", 257) + `","source":"/s","type":"e","subject":"c","time":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
		// Creditmeter's own event is not a CloudEvent.
		{good, ingest.ReasonInvalid, "customer_id"},
	}
	for _, tc := range cases {
		var ev rating.Event
		checkReject(t, tc.in, ingest.DecodeCloudEvent([]byte(tc.in), &ev), tc.reason, tc.field)
	}
	var exts strings.Builder
	for i := range ingest.MaxExtensions + 1 {
		exts.WriteString(`,"x` + strings.Repeat("y", i) + `":1`)
	}
	in := `{"specversion":"1.0",` + base + exts.String() + `}`
	var ev rating.Event
	checkReject(t, "33 extensions", ingest.DecodeCloudEvent([]byte(in), &ev), ingest.ReasonInvalid, "x"+strings.Repeat("y", ingest.MaxExtensions))
}

func TestCloudEventBinaryRejects(t *testing.T) {
	without := func(key string) []kafka.Header {
		var out []kafka.Header
		for _, h := range goodBinary {
			if h.Key != key {
				out = append(out, h)
			}
		}
		return out
	}
	with := func(kv ...string) []kafka.Header {
		return append(append([]kafka.Header{}, goodBinary...), binaryHeaders(kv...)...)
	}
	cases := []struct {
		name    string
		headers []kafka.Header
		value   string
		reason  string
		field   string
	}{
		{"no specversion header is not binary mode", without("ce_specversion"), goodBinaryValue, ingest.ReasonInvalid, "ce_specversion"},
		{"wrong specversion", append(without("ce_specversion"), binaryHeaders("ce_specversion", "0.3")...), goodBinaryValue, ingest.ReasonInvalid, "ce_specversion"},
		{"no subject", without("ce_subject"), goodBinaryValue, ingest.ReasonInvalid, "ce_subject"},
		{"no id", without("ce_id"), goodBinaryValue, ingest.ReasonInvalid, "ce_id"},
		{"no time", without("ce_time"), goodBinaryValue, ingest.ReasonInvalid, "ce_time"},
		{"bad time", with("ce_time", "now"), goodBinaryValue, ingest.ReasonInvalid, "ce_time"},
		{"repeated", with("ce_subject", "cust-2"), goodBinaryValue, ingest.ReasonInvalid, "ce_subject"},
		{"bad extension name", with("ce_customer_id", "c"), goodBinaryValue, ingest.ReasonInvalid, "ce_customer_id"},
		{"data header", with("ce_data", `{"tokens":1}`), goodBinaryValue, ingest.ReasonInvalid, "ce_data"},
		{"datacontenttype header", with("ce_datacontenttype", "application/json"), goodBinaryValue, ingest.ReasonInvalid, "ce_datacontenttype"},
		{"xml data", append(without("content-type"), binaryHeaders("content-type", "application/xml")...), goodBinaryValue, ingest.ReasonInvalid, "content-type"},
		{"bad UTF-8", with("ce_traceparent", "\xff"), goodBinaryValue, ingest.ReasonInvalid, "ce_traceparent"},
		{"data not an object", goodBinary, `[1]`, ingest.ReasonInvalid, "data"},
		{"bad dimension", goodBinary, `{"x":true}`, ingest.ReasonInvalid, "data.x"},
		{"malformed data", goodBinary, `{"x":1`, ingest.ReasonMalformed, ""},
		{"trailing data", goodBinary, `{"x":1} {}`, ingest.ReasonMalformed, ""},
	}
	for _, tc := range cases {
		var ev rating.Event
		m := kafka.Message{Headers: tc.headers, Value: []byte(tc.value)}
		if tc.name == "no specversion header is not binary mode" {
			// Without ce_specversion the message is read as JSON: not an event.
			err := ingest.DecodeMessage(&m, &ev)
			var ee *ingest.EventError
			if !errors.As(err, &ee) || ee.Field != "tokens" {
				t.Errorf("%s: %v", tc.name, err)
			}
			checkReject(t, tc.name, ingest.DecodeCloudEventBinary(tc.headers, []byte(tc.value), &ev), tc.reason, tc.field)
			continue
		}
		checkReject(t, tc.name, ingest.DecodeMessage(&m, &ev), tc.reason, tc.field)
	}
	// A batch has no Kafka binding.
	m := kafka.Message{Value: []byte(`[` + goodCE + `]`), Headers: binaryHeaders("content-type", ingest.ContentTypeCloudEventBatch)}
	var ev rating.Event
	checkReject(t, "batch on Kafka", ingest.DecodeMessage(&m, &ev), ingest.ReasonInvalid, "content-type")
	// A structured content-type wins over ce_ headers (the binding's order).
	m = kafka.Message{Value: []byte(goodCE), Headers: with("content-type", ingest.ContentTypeCloudEvent)}
	m.Headers = append(without("content-type"), binaryHeaders("content-type", ingest.ContentTypeCloudEvent)...)
	if err := ingest.DecodeMessage(&m, &ev); err != nil {
		t.Fatal(err)
	}
	checkMapped(t, &ev)
	// A message sniffed as a CloudEvent reports CloudEvents errors; one that
	// is not reports the creditmeter schema's.
	m = kafka.Message{Value: []byte(`{"specversion":"0.3","id":"a"}`)}
	checkReject(t, "sniffed 0.3", ingest.DecodeMessage(&m, &ev), ingest.ReasonInvalid, "specversion")
	m = kafka.Message{Value: []byte(`{"id":"a","colour":{"specversion":"1.0"}}`)}
	checkReject(t, "nested specversion", ingest.DecodeMessage(&m, &ev), ingest.ReasonInvalid, "colour")
}

func checkReject(t *testing.T, name string, err error, reason, field string) {
	t.Helper()
	var ee *ingest.EventError
	if !errors.As(err, &ee) || !errors.Is(err, ingest.ErrEvent) {
		t.Errorf("%s: want *EventError, got %v", name, err)
		return
	}
	if ee.Reason != reason || ee.Field != field {
		t.Errorf("%s: got reason %q field %q (%v), want %q %q", name, ee.Reason, ee.Field, err, reason, field)
	}
}

// Creditmeter's own JSON stays allocation-free through DecodeMessage (the
// engine's entry point); a CloudEvent costs one allocation, its id
// (source|id).
func TestDecodeMessageAllocations(t *testing.T) {
	ev := rating.Event{Dims: make([]rating.Dim, 0, 8)}
	for _, tc := range []struct {
		name string
		m    kafka.Message
		want float64
	}{
		{"own JSON", kafka.Message{Value: []byte(good)}, 0},
		{"own JSON with headers", kafka.Message{Value: []byte(good), Headers: binaryHeaders("traceparent", "00-1")}, 0},
		{"structured", kafka.Message{Value: []byte(goodCE), Headers: binaryHeaders("content-type", ingest.ContentTypeCloudEvent)}, 1},
		{"structured, sniffed", kafka.Message{Value: []byte(goodCE)}, 1},
		{"binary", kafka.Message{Value: []byte(goodBinaryValue), Headers: goodBinary}, 1},
	} {
		allocs := testing.AllocsPerRun(1000, func() {
			if err := ingest.DecodeMessage(&tc.m, &ev); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != tc.want {
			t.Errorf("%s: %.1f allocations per event, want %.0f", tc.name, allocs, tc.want)
		}
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	for _, tc := range []struct {
		name string
		m    kafka.Message
	}{
		{"own", kafka.Message{Value: []byte(good)}},
		{"cloudevent-structured", kafka.Message{Value: []byte(goodCE), Headers: binaryHeaders("content-type", ingest.ContentTypeCloudEvent)}},
		{"cloudevent-sniffed", kafka.Message{Value: []byte(goodCE)}},
		{"cloudevent-binary", kafka.Message{Value: []byte(goodBinaryValue), Headers: goodBinary}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ev := rating.Event{Dims: make([]rating.Dim, 0, 8)}
			b.SetBytes(int64(len(tc.m.Value)))
			b.ReportAllocs()
			for b.Loop() {
				if err := ingest.DecodeMessage(&tc.m, &ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeCloudEvent(b *testing.B) {
	buf := []byte(goodCE)
	ev := rating.Event{Dims: make([]rating.Dim, 0, 8)}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ingest.DecodeCloudEvent(buf, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecodeCloudEvent(f *testing.F) {
	f.Add([]byte(goodCE))
	f.Add([]byte(`{"specversion":"1.0","id":"a","source":"/s","type":"e","subject":"c","time":"2026-11-27T10:00:00Z","x":true,"data":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev rating.Event
		if err := ingest.DecodeCloudEvent(b, &ev); err != nil {
			return
		}
		// Whatever is accepted is JSON encoding/json reads the same way.
		m, err := reference(b)
		if err != nil {
			t.Fatalf("accepted what encoding/json rejects (%v): %q", err, b)
		}
		if m["specversion"] != "1.0" || ev.ID != m["source"].(string)+"|"+m["id"].(string) || m["subject"] != ev.CustomerID || m["type"] != ev.Name {
			t.Fatalf("mapping of %q: %+v", b, ev)
		}
	})
}
