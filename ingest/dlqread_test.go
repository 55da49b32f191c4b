package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

func sendDead(t *testing.T, w *ingest.Writers, from, n int, reason string) {
	t.Helper()
	var dls []ingest.DeadLetter
	for i := from; i < from+n; i++ {
		cust := fmt.Sprintf("cust-%d", i)
		v := fmt.Sprintf(`{"id":"ev-%d","customer_id":%q,"event_name":"email.sent","timestamp":"2026-11-30T10:00:00Z"}`, i, cust)
		dls = append(dls, ingest.DeadLetter{Msg: kafka.Message{Topic: "usage-events", Partition: i % 2, Offset: int64(100 + i),
			Key: []byte(cust), Value: []byte(v), Headers: []kafka.Header{{Key: "trace", Value: []byte("t")}}},
			Reason: reason, Field: "customer_id", Detail: "customer " + cust + " is unknown"})
	}
	if err := w.SendDLQ(context.Background(), dls); err != nil {
		t.Fatal(err)
	}
}

// Issue 18.5: the dead-letter topic is listed newest first in pages that
// hold still while dead letters arrive, with counts by reason, filters by
// reason and time, and the original position of each.
func TestDeadLetterListPages(t *testing.T) {
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	sendDead(t, w, 0, 5, ingest.ReasonUnknownCust)
	sendDead(t, w, 5, 2, ingest.ReasonUnratable)
	rd := ingest.DeadLetterReader{Conn: ingest.Plain(b.Addr()), Topic: "usage-events-dlq"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	seen := map[string]bool{}
	var cursor string
	var last time.Time
	for pageNo := 0; ; pageNo++ {
		p, err := rd.List(ctx, ingest.DeadLetterQuery{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatalf("page %d: %v", pageNo, err)
		}
		unratable := int64(min(pageNo, 1) + 2) // the counts do include the one written after page 1
		if p.Total != 5+unratable || p.Counts[ingest.ReasonUnknownCust] != 5 || p.Counts[ingest.ReasonUnratable] != unratable {
			t.Errorf("page %d: total %d counts %v, want 5 unknown_customer + %d unratable", pageNo, p.Total, p.Counts, unratable)
		}
		if pageNo == 0 { // one arriving now sorts before page 1's end: later pages do not change
			sendDead(t, w, 7, 1, ingest.ReasonUnratable)
		}
		for _, e := range p.Entries {
			if seen[e.EventID] {
				t.Errorf("page %d repeats %s", pageNo, e.EventID)
			}
			seen[e.EventID] = true
			if !last.IsZero() && e.Time.After(last) {
				t.Errorf("page %d: %s at %s after the previous entry at %s: not newest first", pageNo, e.EventID, e.Time, last)
			}
			last = e.Time
			var i int
			fmt.Sscanf(e.EventID, "ev-%d", &i)
			want := ingest.Position{Topic: "usage-events", Partition: i % 2, Offset: int64(100 + i)}
			if e.Original != want || e.CustomerID != fmt.Sprintf("cust-%d", i) || e.Field != "customer_id" ||
				e.Detail == "" || e.DLQ.Topic != "usage-events-dlq" || e.Value != nil {
				t.Errorf("entry %+v: want original %v, customer cust-%d, field and detail, no value", e, want, i)
			}
		}
		if len(p.Entries) > 3 {
			t.Fatalf("page %d has %d entries, limit 3", pageNo, len(p.Entries))
		}
		if p.NextCursor == "" {
			if pageNo != 2 || len(seen) != 7 {
				t.Errorf("last page is %d with %d entries seen, want page 2 and the 7 dead letters before the cursor", pageNo, len(seen))
			}
			break
		}
		cursor = p.NextCursor
	}
	if seen["ev-7"] {
		t.Errorf("the dead letter written after page 1 showed on a later page")
	}

	p, err := rd.List(ctx, ingest.DeadLetterQuery{Reason: ingest.ReasonUnratable})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 3 || len(p.Entries) != 3 || p.Entries[0].EventID != "ev-7" || p.NextCursor != "" || p.Counts[ingest.ReasonUnknownCust] != 5 {
		t.Errorf("reason unratable: total %d, %d entries, first %q, counts %v; want 3 newest first ev-7, counts of every reason", p.Total, len(p.Entries), p.Entries[0].EventID, p.Counts)
	}

	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	time.Sleep(20 * time.Millisecond)
	sendDead(t, w, 8, 2, ingest.ReasonMalformed)
	if p, err = rd.List(ctx, ingest.DeadLetterQuery{Since: since}); err != nil {
		t.Fatal(err)
	}
	if p.Total != 2 || len(p.Counts) != 1 || p.Counts[ingest.ReasonMalformed] != 2 {
		t.Errorf("since: total %d counts %v, want the 2 malformed only", p.Total, p.Counts)
	}

	if _, err := rd.List(ctx, ingest.DeadLetterQuery{Cursor: "bm90IGEgY3Vyc29y"}); !errors.Is(err, ingest.ErrBadCursor) {
		t.Errorf("foreign cursor: %v, want ErrBadCursor", err)
	}
	if _, err := rd.List(ctx, ingest.DeadLetterQuery{Limit: ingest.MaxDeadLetterLimit + 1}); err == nil {
		t.Errorf("limit %d accepted", ingest.MaxDeadLetterLimit+1)
	}
}

// A topic that does not exist yet (no dead letter ever) lists empty.
func TestDeadLetterListNoTopic(t *testing.T) {
	b := testenv.Broker(t, 2, "usage-events")
	rd := ingest.DeadLetterReader{Conn: ingest.Plain(b.Addr()), Topic: "usage-events-dlq-" + testenv.RandomID(t)}
	p, err := rd.List(context.Background(), ingest.DeadLetterQuery{})
	if err != nil || p.Total != 0 || len(p.Entries) != 0 {
		t.Fatalf("missing topic: %+v %v, want an empty page", p, err)
	}
}

// BenchmarkDeadLetterList lists the first page of a topic of 100,000 dead
// letters (each List reads the whole topic).
func BenchmarkDeadLetterList(b *testing.B) {
	br := testenv.Broker(b, 2, "usage-events", "usage-events-dlq")
	w := ingest.NewWriters([]string{br.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	const n = 100_000
	dls := make([]ingest.DeadLetter, 0, 10_000)
	for i := 0; i < n; i++ {
		cust := fmt.Sprintf("cust-%d", i%1000)
		v := fmt.Sprintf(`{"id":"ev-%d","customer_id":%q,"event_name":"email.sent","timestamp":"2026-11-30T10:00:00Z"}`, i, cust)
		dls = append(dls, ingest.DeadLetter{Msg: kafka.Message{Topic: "usage-events", Offset: int64(i), Key: []byte(cust), Value: []byte(v)},
			Reason: ingest.ReasonUnknownCust, Field: "customer_id", Detail: "unknown"})
		if len(dls) == cap(dls) {
			if err := w.SendDLQ(context.Background(), dls); err != nil {
				b.Fatal(err)
			}
			dls = dls[:0]
		}
	}
	rd := ingest.DeadLetterReader{Conn: ingest.Plain(br.Addr()), Topic: "usage-events-dlq"}
	b.ResetTimer()
	for range b.N {
		p, err := rd.List(context.Background(), ingest.DeadLetterQuery{Limit: 50})
		if err != nil || p.Total != n {
			b.Fatalf("%v, total %d", err, p.Total)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "dead-letters/s")
}
