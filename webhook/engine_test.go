package webhook_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
)

// Usage streamed through Kafka crosses the low-balance threshold (20) and
// exhausts a 30-credit balance: the engine emits balance.low and
// balance.exhausted once, and a second consumer group replaying the whole
// topic (every line a duplicate) emits nothing more.
func TestEngineEmitsCrossings(t *testing.T) {
	h := e2e.New(t, 1)
	ctx := context.Background()
	sub, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "cust-wh", Plan: seed.PlanUnfunded, Included: "30"})
	if err != nil {
		t.Fatal(err)
	}
	hooks, _ := webhook.NewStore(h.RC, h.Prefix, webhook.Options{})
	ep, err := hooks.Create(ctx, webhook.Endpoint{URL: "http://127.0.0.1:9/x", Events: webhook.Types})
	if err != nil {
		t.Fatal(err)
	}
	n := &webhook.Notifier{Emitter: hooks, Notes: h.Balances}
	var msgs []kafka.Message
	base := time.Now()
	for i := range 40 {
		ev := rating.Event{ID: fmt.Sprintf("wh-%d", i), CustomerID: "cust-wh", Name: "email.sent", Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
		msgs = append(msgs, kafka.Message{Key: []byte("cust-wh"), Value: ingest.AppendJSON(nil, &ev)})
	}
	h.Produce(msgs[:25])
	h.Produce(msgs[25:])
	for _, group := range []string{"wh-1", "wh-2"} {
		e, m, src := h.NewEngine(group, engine.Config{Notify: n.Batches})
		stop := run(t, e)
		e2e.WaitConsumed(t, m, len(msgs), time.Minute)
		stop()
		src.Close()
	}
	ds, err := hooks.Deliveries(ctx, ep.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, d := range ds {
		got[d.EventType]++
	}
	if want := map[string]int{webhook.BalanceLow: 1, webhook.BalanceExhausted: 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events of %s: %v, want %v", sub, got, want)
	}
}

func run(t *testing.T, e *engine.Engine) (stop func()) {
	t.Helper()
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
