package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/rating"
)

// Issue 18.2: events' dimensions reach rated_usage through the engine
// (strings and exact numbers, a producer's duplicate once), so usage groups
// and filters by them.
func TestDimensionsArchivedThroughEngine(t *testing.T) {
	h := e2e.New(t, 2)
	h.Subscribe(2)
	ctx := context.Background()
	now := time.Now().UTC() // after the subscriptions start
	var msgs []kafka.Message
	add := func(id, cust, name string, dims ...rating.Dim) {
		ev := rating.Event{ID: id, CustomerID: cust, Name: name, Timestamp: now, Dims: dims}
		msgs = append(msgs, kafka.Message{Key: []byte(cust), Value: ingest.AppendJSON(nil, &ev)})
	}
	str := func(k, v string) rating.Dim { return rating.Dim{Key: k, Str: v} }
	num := func(k string, v int64) rating.Dim {
		return rating.Dim{Key: k, Num: rating.Number{Mant: v}, IsNum: true}
	}
	for i := 0; i < 3; i++ {
		add(fmt.Sprint("a-email-", i), "cust-000", "email.sent", str("agent", "outreach"))
	}
	add("a-llm-1", "cust-000", "llm.call", num("tokens", 1500), str("model", "gpt-x"), str("agent", "outreach"))
	add("a-llm-2", "cust-000", "llm.call", num("tokens", 500), str("model", "gpt-y"))
	add("a-llm-2", "cust-000", "llm.call", num("tokens", 500), str("model", "gpt-y")) // a producer's duplicate
	add("b-llm-1", "cust-001", "llm.call", str("model", "gpt-x"), num("tokens", 2000))
	h.Produce(msgs)

	e, m, src := h.NewEngine("dims", engine.Config{})
	defer src.Close()
	stop := run(t, e)
	e2e.WaitConsumed(t, m, len(msgs), time.Minute)
	stop()

	var keys, values []string
	if err := h.Conn.QueryRow(ctx, "SELECT dim_keys, dim_values FROM rated_usage FINAL WHERE event_id = 'a-llm-1'").Scan(&keys, &values); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(keys, values); got != "[tokens model agent] [1500 gpt-x outreach]" {
		t.Errorf("a-llm-1's dimensions: %s", got)
	}
	rep, err := archive.Report(ctx, h.Conn, archive.ReportQuery{From: now.Add(-time.Hour), To: now.Add(time.Hour),
		Groups: []string{"customer", "feature", "dim:model"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Rows {
		got = append(got, fmt.Sprintf("%s %s %s qty=%s credits=%s events=%d", r.CustomerID, r.Feature, r.Dimensions["model"], r.Quantity, r.Credits, r.Events))
	}
	want := []string{
		"cust-000 ai-agent-email  qty=3 credits=3 events=3",
		"cust-000 ai-agent-tokens gpt-x qty=1500 credits=1.5 events=1",
		"cust-000 ai-agent-tokens gpt-y qty=500 credits=0.5 events=1",
		"cust-001 ai-agent-tokens gpt-x qty=2000 credits=2 events=1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("usage by customer, feature, model:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
