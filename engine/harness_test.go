package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/broker"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

const (
	topic    = "usage-events"
	dlqTopic = "usage-events-dlq"
)

// harness is one isolated world on the real services: its own broker, Redis
// key prefix and ClickHouse database, the seed catalog and subscriptions.
type harness struct {
	t        *testing.T
	ctx      context.Context
	broker   *broker.Broker
	rc       *redis.Client
	prefix   string
	conn     driver.Conn
	cc       archive.ConnConfig
	catalog  *catalogstore.Store
	balances *balance.Store
	writer   *archive.Writer
	accounts *engine.Accounts
	subs     map[string]*expect // by customer
	seeded   time.Time
}

// expect is what the test computes independently for one subscription.
type expect struct {
	sub      string
	included credit.Amount
	overage  bool
	usage    credit.Amount // credits of distinct events
	events   map[string]credit.Amount
}

func newHarness(t *testing.T, partitions int) *harness {
	t.Helper()
	h := &harness{t: t, ctx: context.Background(), subs: map[string]*expect{}}
	h.rc = testenv.Redis(t)
	h.conn, h.cc = testenv.ClickHouse(t)
	h.broker = testenv.Broker(t, partitions, topic, dlqTopic)
	h.prefix = testenv.Prefix(t)
	t.Cleanup(func() {
		keys, _ := h.rc.Keys(context.Background(), h.prefix+"*").Result()
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			h.rc.Del(context.Background(), keys[:n]...)
			keys = keys[n:]
		}
	})
	if err := archive.Migrate(h.ctx, h.cc); err != nil {
		t.Fatal(err)
	}
	var err error
	if h.catalog, err = catalogstore.New(h.rc, h.prefix); err != nil {
		t.Fatal(err)
	}
	if h.balances, err = balance.New(h.rc, balance.Options{Prefix: h.prefix, GraceWindow: 15 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	h.writer = archive.NewWriter(h.conn)
	h.accounts = &engine.Accounts{Store: h.balances, Archive: h.writer}
	if err := seed.Catalog(h.ctx, h.catalog); err != nil {
		t.Fatal(err)
	}
	return h
}

// subscribe creates n customers; every fifth is on the overage plan with a
// small grant so its balance goes negative.
func (h *harness) subscribe(n int) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		cust := fmt.Sprintf("cust-%03d", i)
		s := seed.Subscription{Customer: cust, Plan: seed.PlanUnfunded, Included: "1000000"}
		if i%5 == 4 {
			s.Plan, s.Included = seed.PlanOverage, "50"
		}
		id, err := seed.Subscribe(h.ctx, h.catalog, h.accounts, s)
		if err != nil {
			h.t.Fatal(err)
		}
		h.subs[cust] = &expect{sub: id, included: credit.MustParse(s.Included), overage: s.Plan == seed.PlanOverage, events: map[string]credit.Amount{}}
	}
	h.seeded = time.Now()
}

// rater is a rater loaded from the harness's catalog.
func (h *harness) rater() *rating.Rater {
	h.t.Helper()
	r := rating.NewRater(nil)
	if _, err := h.catalog.Refresh(h.ctx, r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// stream is a generated event stream and what it must produce.
type stream struct {
	msgs []kafka.Message
	dlq  map[string]int // expected dead letters by reason
}

// generate makes n valid events over the harness's customers with dup
// duplicates (same id and content sent again later), plus bad events.
func (h *harness) generate(seedN uint64, n, dup, bad int) *stream {
	r := rand.New(rand.NewPCG(seedN, 99))
	custs := make([]string, 0, len(h.subs))
	for c := range h.subs {
		custs = append(custs, c)
	}
	sort.Strings(custs)
	st := &stream{dlq: map[string]int{}}
	var sent []kafka.Message
	base := h.seeded.Add(time.Second)
	for i := 0; i < n; i++ {
		cust := custs[r.IntN(len(custs))]
		ev := rating.Event{ID: fmt.Sprintf("ev-%d-%d", seedN, i), CustomerID: cust,
			Timestamp: base.Add(time.Duration(r.IntN(3000)) * time.Millisecond)}
		var credits credit.Amount
		if r.IntN(10) < 7 {
			ev.Name, credits = "email.sent", credit.Credits(1)
		} else {
			tokens := int64(1 + r.IntN(5000))
			ev.Name = "llm.call"
			ev.Dims = []rating.Dim{{Key: "tokens", Num: rating.NumberOf(tokens), IsNum: true}, {Key: "model", Str: "m-1"}}
			credits = credit.Amount(tokens * 1000) // 0.001 AIT per token
		}
		e := h.subs[cust]
		e.events[ev.ID] = credits
		e.usage += credits
		m := kafka.Message{Key: []byte(cust), Value: ingest.AppendJSON(nil, &ev)}
		sent = append(sent, m)
		st.msgs = append(st.msgs, m)
	}
	for i := 0; i < dup; i++ {
		// A producer retry: the same event again, somewhere later.
		m := sent[r.IntN(len(sent))]
		at := r.IntN(len(st.msgs)+1-len(sent)/2) + len(sent)/2
		st.msgs = append(st.msgs[:at], append([]kafka.Message{m}, st.msgs[at:]...)...)
	}
	for i := 0; i < bad; i++ {
		var m kafka.Message
		switch i % 3 {
		case 0:
			m = kafka.Message{Key: []byte("x"), Value: []byte(`{"id":"broken`)}
			st.dlq[ingest.ReasonMalformed]++
		case 1:
			ev := rating.Event{ID: fmt.Sprint("ghost-", i), CustomerID: "nobody", Name: "email.sent", Timestamp: base}
			m = kafka.Message{Key: []byte("nobody"), Value: ingest.AppendJSON(nil, &ev)}
			st.dlq[ingest.ReasonUnknownCust]++
		case 2:
			ev := rating.Event{ID: fmt.Sprint("odd-", i), CustomerID: custs[0], Name: "video.render", Timestamp: base}
			m = kafka.Message{Key: []byte(custs[0]), Value: ingest.AppendJSON(nil, &ev)}
			st.dlq[ingest.ReasonUnratable]++
		}
		at := r.IntN(len(st.msgs) + 1)
		st.msgs = append(st.msgs[:at], append([]kafka.Message{m}, st.msgs[at:]...)...)
	}
	return st
}

func (h *harness) produce(msgs []kafka.Message) {
	h.t.Helper()
	w := ingest.NewWriters([]string{h.broker.Addr()}, topic, dlqTopic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 2*time.Minute)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 10000)
		if err := w.PublishRaw(ctx, msgs[:n]...); err != nil {
			h.t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// newEngine builds an in-process engine over the harness with its own metrics.
func (h *harness) newEngine(group string, cfg engine.Config) (*engine.Engine, *engine.Metrics, *ingest.Consumer) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	m := engine.NewMetrics(reg)
	rater := h.rater()
	cfg.Metrics, cfg.Topic = m, topic
	cfg.Refresh = func(ctx context.Context) error { _, _, err := h.catalog.Sync(ctx, rater); return err }
	cfg.CustomerExists = func(ctx context.Context, id string) bool { _, err := h.catalog.Customer(ctx, id); return err == nil }
	src := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: []string{h.broker.Addr()}, Topic: topic, Group: group, MaxWait: 50 * time.Millisecond})
	w := ingest.NewWriters([]string{h.broker.Addr()}, topic, dlqTopic)
	h.t.Cleanup(func() { w.Close() })
	e, err := engine.New(cfg, src, w, rater, h.balances, h.writer)
	if err != nil {
		h.t.Fatal(err)
	}
	return e, m, src
}

// waitConsumed waits until the engine's metrics count n consumed events.
func waitConsumed(t *testing.T, m *engine.Metrics, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for testutil.ToFloat64(m.Consumed) < float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %v of %d events in %s", testutil.ToFloat64(m.Consumed), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verify checks balances in Redis, rated_usage and credit_ledger in
// ClickHouse (with FINAL) against the independently computed expectations.
func (h *harness) verify() {
	h.t.Helper()
	wantLines := 0
	for cust, e := range h.subs {
		wantLines += len(e.events)
		v, err := h.balances.Balance(h.ctx, e.sub)
		if err != nil {
			h.t.Fatal(err)
		}
		want := e.included - e.usage
		if !e.overage && want < 0 {
			want = 0
		}
		if v.Total != want {
			h.t.Errorf("%s: balance %s, want %s (included %s, usage %s)", cust, v.Total, want, e.included, e.usage)
		}
		var n uint64
		var credits, ledger decimal.Decimal
		if err := h.conn.QueryRow(h.ctx, "SELECT count(), sum(credits) FROM rated_usage FINAL WHERE subscription_id = ?", e.sub).Scan(&n, &credits); err != nil {
			h.t.Fatal(err)
		}
		if int(n) != len(e.events) || !credits.Equal(e.usage.Decimal()) {
			h.t.Errorf("%s: rated_usage has %d rows for %s credits, want %d for %s", cust, n, credits, len(e.events), e.usage)
		}
		if err := h.conn.QueryRow(h.ctx, "SELECT sum(amount) FROM credit_ledger FINAL WHERE subscription_id = ?", e.sub).Scan(&ledger); err != nil {
			h.t.Fatal(err)
		}
		if !ledger.Equal(v.Total.Decimal()) {
			h.t.Errorf("%s: archived ledger sums to %s, Redis balance is %s", cust, ledger, v.Total)
		}
	}
	var total uint64
	if err := h.conn.QueryRow(h.ctx, "SELECT count() FROM rated_usage FINAL").Scan(&total); err != nil {
		h.t.Fatal(err)
	}
	if int(total) != wantLines {
		h.t.Errorf("rated_usage has %d rows in all, want %d", total, wantLines)
	}
}

// deadLetters reads the whole DLQ topic and counts reasons.
func (h *harness) deadLetters(want int) map[string]int {
	h.t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{h.broker.Addr()}, Topic: dlqTopic, GroupID: "dlq-check-" + testenv.RandomID(h.t),
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	got := map[string]int{}
	seen := map[string]bool{}
	for n := 0; n < want; n++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			h.t.Fatalf("DLQ: read %d of %d: %v", n, want, err)
		}
		var reason, pos string
		for _, hd := range m.Headers {
			switch hd.Key {
			case ingest.HeaderReason:
				reason = string(hd.Value)
			case ingest.HeaderPartition, ingest.HeaderOffset:
				pos += string(hd.Value) + "/"
			}
		}
		if seen[pos] {
			n-- // a dead letter resent after a crash: count each original once
			continue
		}
		seen[pos] = true
		got[reason]++
	}
	return got
}
