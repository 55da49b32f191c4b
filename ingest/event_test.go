package ingest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

const good = `{"id":"ev-1","customer_id":"cust-1","event_name":"email.sent","timestamp":"2026-11-27T10:00:00.123Z","dimensions":{"tokens":1500,"model":"gpt","ratio":"0.25"}}`

func TestDecodeGood(t *testing.T) {
	var ev rating.Event
	if err := ingest.Decode([]byte(good), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != "ev-1" || ev.CustomerID != "cust-1" || ev.Name != "email.sent" || ev.SubscriptionID != "" {
		t.Fatalf("decoded %+v", ev)
	}
	if !ev.Timestamp.Equal(time.Date(2026, 11, 27, 10, 0, 0, 123e6, time.UTC)) {
		t.Errorf("timestamp %v", ev.Timestamp)
	}
	tok, ok := ev.Dim("tokens")
	if !ok || !tok.IsNum || !tok.Num.Equal(rating.NumberOf(1500)) {
		t.Errorf("tokens %+v", tok)
	}
	model, ok := ev.Dim("model")
	if !ok || model.IsNum || model.Str != "gpt" {
		t.Errorf("model %+v", model)
	}
	ratio, _ := ev.Dim("ratio")
	if ratio.IsNum || ratio.Str != "0.25" {
		t.Errorf("a string dimension stays a string: %+v", ratio)
	}

	// Optional fields, escapes, whitespace, offsets.
	in := " {\n \"id\" : \"a\\\"b\", \"customer_id\":\"c\", \"subscription_id\":\"s-1\", \"event_name\":\"x\", \"timestamp\":\"2026-11-27T10:00:00+02:00\", \"dimensions\":null } "
	if err := ingest.Decode([]byte(in), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != `a"b` || ev.SubscriptionID != "s-1" || len(ev.Dims) != 0 || !ev.Timestamp.Equal(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("decoded %+v", ev)
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		in, reason, field string
	}{
		{`not json`, ingest.ReasonMalformed, ""},
		{`[1]`, ingest.ReasonMalformed, ""},
		{`{"id":"a"`, ingest.ReasonMalformed, ""},
		{good + "x", ingest.ReasonMalformed, ""},
		{`{"customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
		{`{"id":"","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
		{`{"id":1,"customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
		{`{"id":"a","event_name":"e","timestamp":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "customer_id"},
		{`{"id":"a","customer_id":"c","timestamp":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "event_name"},
		{`{"id":"a","customer_id":"c","event_name":"e"}`, ingest.ReasonInvalid, "timestamp"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"yesterday"}`, ingest.ReasonInvalid, "timestamp"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27 10:00:00"}`, ingest.ReasonInvalid, "timestamp"},
		{`{"id":"a","id":"b","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","colour":"red"}`, ingest.ReasonInvalid, "colour"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","dimensions":[1]}`, ingest.ReasonInvalid, "dimensions"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","dimensions":{"x":true}}`, ingest.ReasonInvalid, "dimensions.x"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","dimensions":{"x":{"y":1}}}`, ingest.ReasonInvalid, "dimensions.x"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","dimensions":{"x":1,"x":2}}`, ingest.ReasonInvalid, "dimensions.x"},
		{`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","dimensions":{"x":1e400}}`, ingest.ReasonInvalid, "dimensions.x"},
		{`{"id":"` + strings.Repeat("a", 257) + `","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z"}`, ingest.ReasonInvalid, "id"},
	}
	for _, tc := range cases {
		var ev rating.Event
		err := ingest.Decode([]byte(tc.in), &ev)
		var ee *ingest.EventError
		if !errors.As(err, &ee) || !errors.Is(err, ingest.ErrEvent) {
			t.Errorf("%s: want *EventError, got %v", tc.in, err)
			continue
		}
		if ee.Reason != tc.reason || ee.Field != tc.field {
			t.Errorf("%s: got reason %q field %q (%v), want %q %q", tc.in, ee.Reason, ee.Field, err, tc.reason, tc.field)
		}
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	b := []byte(good)
	ev := rating.Event{Dims: make([]rating.Dim, 0, 8)}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := ingest.Decode(b, &ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode allocates %.1f times per event, want 0", allocs)
	}
}

// reference decodes with encoding/json, strictly, as a slow second opinion.
func reference(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"id":"a\u00e9","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","dimensions":{"n":-1.5e2}}`))
	f.Add([]byte(`{"id":"a","customer_id":"c","event_name":"e","timestamp":"2026-11-27T10:00:00Z","dimensions":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev rating.Event
		if err := ingest.Decode(b, &ev); err != nil {
			return
		}
		// Whatever Decode accepts, encoding/json accepts with the same values.
		m, err := reference(b)
		if err != nil {
			t.Fatalf("Decode accepted what encoding/json rejects (%v): %q", err, b)
		}
		for k, want := range map[string]string{"id": ev.ID, "customer_id": ev.CustomerID, "event_name": ev.Name} {
			if m[k] != want {
				t.Fatalf("%s: Decode %q, encoding/json %v", k, want, m[k])
			}
		}
		// And encoding the event gives JSON that decodes to the same event.
		out := ingest.AppendJSON(nil, &ev)
		var ev2 rating.Event
		if err := ingest.Decode(out, &ev2); err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if ev2.ID != ev.ID || ev2.CustomerID != ev.CustomerID || ev2.Name != ev.Name || ev2.SubscriptionID != ev.SubscriptionID ||
			!ev2.Timestamp.Equal(ev.Timestamp) || len(ev2.Dims) != len(ev.Dims) {
			t.Fatalf("round trip: %+v != %+v", ev2, ev)
		}
		for i := range ev.Dims {
			a, b := ev.Dims[i], ev2.Dims[i]
			if a.Key != b.Key || a.IsNum != b.IsNum || a.Str != b.Str || !a.Num.Equal(b.Num) {
				t.Fatalf("dimension %d: %+v != %+v", i, a, b)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	buf := []byte(good)
	ev := rating.Event{Dims: make([]rating.Dim, 0, 8)}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ingest.Decode(buf, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// Timestamps before 1970 are refused by Decode (the balance store and the
// archive cannot hold them); future ones by CheckFuture, which needs a clock.
func TestTimestampRange(t *testing.T) {
	for _, ts := range []string{"1969-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z"} {
		var ev rating.Event
		err := ingest.Decode([]byte(`{"id":"a","customer_id":"c","event_name":"e","timestamp":"`+ts+`"}`), &ev)
		var ee *ingest.EventError
		if !errors.As(err, &ee) || ee.Reason != ingest.ReasonInvalid || ee.Field != "timestamp" {
			t.Errorf("%s: %v, want invalid timestamp", ts, err)
		}
	}
	now := time.Date(2026, 11, 30, 23, 58, 0, 0, time.UTC)
	for _, tc := range []struct {
		ts time.Time
		ok bool
	}{
		{now, true}, {now.Add(-48 * time.Hour), true}, {now.Add(5 * time.Minute), true},
		{now.Add(5*time.Minute + time.Millisecond), false}, {now.Add(24 * time.Hour), false},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), false}, {time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), false},
	} {
		err := ingest.CheckFuture(tc.ts, now, ingest.DefaultMaxFutureSkew)
		var ee *ingest.EventError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.ts, err)
		case !tc.ok && (!errors.As(err, &ee) || ee.Reason != ingest.ReasonInvalid || ee.Field != "timestamp"):
			t.Errorf("%s: %v, want invalid timestamp", tc.ts, err)
		}
	}
}
