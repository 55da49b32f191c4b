// Package e2e is the end-to-end test world: an isolated broker, Redis key
// prefix and ClickHouse database with the seed catalog and subscriptions, a
// generated event stream, and checks of balances and archive against sums it
// computes itself. Used by the engine's and the binary's tests.
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/broker"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// Topics of the world.
const (
	Topic    = "usage-events"
	DLQTopic = "usage-events-dlq"
)

// Harness is one isolated world on the real services: its own broker, Redis
// key prefix and ClickHouse database, the seed catalog and subscriptions.
type Harness struct {
	t        *testing.T
	ctx      context.Context
	Broker   *broker.Broker
	RC       redis.UniversalClient
	Redis    testenv.RedisBackend // RedisAddr is what serve gets as --redis-addr
	Prefix   string
	Conn     driver.Conn
	CC       archive.ConnConfig
	Catalog  *catalogstore.Store
	Balances *balance.Store
	Writer   *archive.Writer
	Accounts *accounts.Accounts
	Subs     map[string]*Expect // by customer
	Seeded   time.Time
	parts    int
}

// Expect is what the test computes independently for one subscription.
type Expect struct {
	Sub      string
	Included credit.Amount
	Overage  bool
	Usage    credit.Amount // credits of distinct events
	Events   map[string]credit.Amount
}

// Private is a backend of one client of the test's own (a private
// redis-server the test may kill, restart or fail over).
func Private(addr string, rc redis.UniversalClient) testenv.RedisBackend {
	return testenv.RedisBackend{Name: "private", Addr: addr, Open: func(testing.TB) redis.UniversalClient { return rc }}
}

// New is a world on the standalone Redis.
func New(t *testing.T, partitions int) *Harness {
	t.Helper()
	return NewOn(t, partitions, testenv.RedisBackends(t)[0])
}

// NewOn is a world on the given Redis deployment (standalone, the shared
// cluster, a test's private cluster).
func NewOn(t *testing.T, partitions int, rb testenv.RedisBackend) *Harness {
	t.Helper()
	h := &Harness{t: t, ctx: context.Background(), Subs: map[string]*Expect{}, parts: partitions, Redis: rb}
	h.RC = rb.Open(t)
	h.Prefix = testenv.KeyspaceOn(t, h.RC)
	h.Conn, h.CC = testenv.Archive(t)
	h.Broker = testenv.Broker(t, partitions, Topic, DLQTopic)
	st, err := app.New(h.RC, h.Conn, h.CC, app.Options{Balance: balance.Options{Prefix: h.Prefix, GraceWindow: 15 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	h.Catalog, h.Balances, h.Writer, h.Accounts = st.Catalog, st.Balances, st.Writer, st.Accounts
	if err := seed.Catalog(h.ctx, h.Catalog); err != nil {
		t.Fatal(err)
	}
	return h
}

// Subscribe creates n customers; every fifth is on the overage plan with a
// small grant so its balance goes negative.
func (h *Harness) Subscribe(n int) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		cust := fmt.Sprintf("cust-%03d", i)
		s := seed.Subscription{Customer: cust, Plan: seed.PlanUnfunded, Included: "1000000"}
		if i%5 == 4 {
			s.Plan, s.Included = seed.PlanOverage, "50"
		}
		id, err := seed.Subscribe(h.ctx, h.Catalog, h.Accounts, s)
		if err != nil {
			h.t.Fatal(err)
		}
		h.Subs[cust] = &Expect{Sub: id, Included: credit.MustParse(s.Included), Overage: s.Plan == seed.PlanOverage, Events: map[string]credit.Amount{}}
	}
	h.Seeded = time.Now()
}

// Rater is a rater loaded from the harness's catalog.
func (h *Harness) Rater() *rating.Rater {
	h.t.Helper()
	r := rating.NewRater(nil)
	if _, err := h.Catalog.Refresh(h.ctx, r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// Stream is a generated event stream and what it must produce.
type Stream struct {
	Msgs []kafka.Message
	DLQ  map[string]int // expected dead letters by reason
}

// Generate makes n valid events over the harness's customers with dup
// duplicates (same id and content sent again later), plus bad events.
func (h *Harness) Generate(seedN uint64, n, dup, bad int) *Stream {
	r := rand.New(rand.NewPCG(seedN, 99))
	custs := make([]string, 0, len(h.Subs))
	for c := range h.Subs {
		custs = append(custs, c)
	}
	sort.Strings(custs)
	st := &Stream{DLQ: map[string]int{}}
	var sent []kafka.Message
	base := h.Seeded.Add(time.Second)
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
		e := h.Subs[cust]
		e.Events[ev.ID] = credits
		e.Usage += credits
		m := kafka.Message{Key: []byte(cust), Value: ingest.AppendJSON(nil, &ev)}
		sent = append(sent, m)
	}
	// Duplicates and bad events go in at random places among the valid ones.
	type insert struct {
		at int
		m  kafka.Message
	}
	var inserts []insert
	for i := 0; i < dup; i++ {
		// A producer retry: the same event again, somewhere later.
		m := sent[r.IntN(len(sent))]
		inserts = append(inserts, insert{at: r.IntN(len(sent)+1-len(sent)/2) + len(sent)/2, m: m})
	}
	for i := 0; i < bad; i++ {
		var m kafka.Message
		switch i % 3 {
		case 0:
			m = kafka.Message{Key: []byte("x"), Value: []byte(`{"id":"broken`)}
			st.DLQ[ingest.ReasonMalformed]++
		case 1:
			ev := rating.Event{ID: fmt.Sprint("ghost-", i), CustomerID: "nobody", Name: "email.sent", Timestamp: base}
			m = kafka.Message{Key: []byte("nobody"), Value: ingest.AppendJSON(nil, &ev)}
			st.DLQ[ingest.ReasonUnknownCust]++
		case 2:
			ev := rating.Event{ID: fmt.Sprint("odd-", i), CustomerID: custs[0], Name: "video.render", Timestamp: base}
			m = kafka.Message{Key: []byte(custs[0]), Value: ingest.AppendJSON(nil, &ev)}
			st.DLQ[ingest.ReasonUnratable]++
		}
		inserts = append(inserts, insert{at: r.IntN(len(sent) + 1), m: m})
	}
	sort.SliceStable(inserts, func(i, j int) bool { return inserts[i].at < inserts[j].at })
	st.Msgs = make([]kafka.Message, 0, len(sent)+len(inserts))
	k := 0
	for i := 0; i <= len(sent); i++ {
		for k < len(inserts) && inserts[k].at == i {
			st.Msgs = append(st.Msgs, inserts[k].m)
			k++
		}
		if i < len(sent) {
			st.Msgs = append(st.Msgs, sent[i])
		}
	}
	return st
}

// Produce sends msgs to the usage topic, in order.
func (h *Harness) Produce(msgs []kafka.Message) {
	h.t.Helper()
	w := ingest.NewWriters([]string{h.Broker.Addr()}, Topic, DLQTopic)
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

// NewEngine builds an in-process engine over the harness with its own metrics.
func (h *Harness) NewEngine(group string, cfg engine.Config) (*engine.Engine, *engine.Metrics, *ingest.Consumer) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	m := engine.NewMetrics(reg)
	rater := h.Rater()
	cfg.Metrics, cfg.Topic = m, Topic
	cfg.Refresh = func(ctx context.Context) error { _, _, err := h.Catalog.Sync(ctx, rater); return err }
	cfg.CustomerExists = func(ctx context.Context, id string) bool { _, err := h.Catalog.Customer(ctx, id); return err == nil }
	src, err := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: []string{h.Broker.Addr()}, Topic: Topic, Group: group, MaxWait: 50 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	w := ingest.NewWriters([]string{h.Broker.Addr()}, Topic, DLQTopic)
	h.t.Cleanup(func() { w.Close() })
	e, err := engine.New(cfg, src, w, rater, h.Balances, h.Writer)
	if err != nil {
		h.t.Fatal(err)
	}
	return e, m, src
}

// WaitConsumed waits until the engine's metrics count n consumed events.
func WaitConsumed(t *testing.T, m *engine.Metrics, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for testutil.ToFloat64(m.Consumed) < float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %v of %d events in %s", testutil.ToFloat64(m.Consumed), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Verify checks balances in Redis, rated_usage and credit_ledger in
// ClickHouse (with FINAL) against the independently computed expectations,
// and that no archived ledger entry was written twice with other content.
func (h *Harness) Verify() {
	h.t.Helper()
	wantLines := 0
	for cust, e := range h.Subs {
		wantLines += len(e.Events)
		v, err := h.Balances.Balance(h.ctx, e.Sub)
		if err != nil {
			h.t.Fatal(err)
		}
		want := e.Included - e.Usage
		if !e.Overage && want < 0 {
			want = 0
		}
		if v.Total != want {
			h.t.Errorf("%s: balance %s, want %s (included %s, usage %s)", cust, v.Total, want, e.Included, e.Usage)
		}
		var n uint64
		var credits, ledger decimal.Decimal
		if err := h.Conn.QueryRow(h.ctx, "SELECT count(), sum(credits) FROM rated_usage FINAL WHERE subscription_id = ?", e.Sub).Scan(&n, &credits); err != nil {
			h.t.Fatal(err)
		}
		if int(n) != len(e.Events) || !credits.Equal(e.Usage.Decimal()) {
			h.t.Errorf("%s: rated_usage has %d rows for %s credits, want %d for %s", cust, n, credits, len(e.Events), e.Usage)
		}
		if err := h.Conn.QueryRow(h.ctx, "SELECT sum(amount) FROM credit_ledger FINAL WHERE subscription_id = ?", e.Sub).Scan(&ledger); err != nil {
			h.t.Fatal(err)
		}
		if !ledger.Equal(v.Total.Decimal()) {
			h.t.Errorf("%s: archived ledger sums to %s, Redis balance is %s", cust, ledger, v.Total)
		}
	}
	var total uint64
	if err := h.Conn.QueryRow(h.ctx, "SELECT count() FROM rated_usage FINAL").Scan(&total); err != nil {
		h.t.Fatal(err)
	}
	if int(total) != wantLines {
		h.t.Errorf("rated_usage has %d rows in all, want %d", total, wantLines)
	}
	// An archived ledger entry is never rewritten (issue 14): no (subscription,
	// seq) holds two rows with other content, even before merges (FINAL
	// would hide the first).
	var reused uint64
	var first string
	if err := h.Conn.QueryRow(h.ctx, `SELECT count(), any(concat(subscription_id, ' seq ', toString(seq))) FROM (SELECT subscription_id, seq,
		uniqExact(toString(kind), amount_micro, balance_after_micro, grant_id, event_count, created_at) AS n
		FROM credit_ledger GROUP BY subscription_id, seq HAVING n > 1)`).Scan(&reused, &first); err != nil {
		h.t.Fatal(err)
	}
	if reused != 0 {
		h.t.Errorf("%d ledger entries were archived twice with other content (a seq reused), first %s", reused, first)
	}
}

// DeadLetters reads the whole DLQ topic and counts reasons.
func (h *Harness) DeadLetters(want int) map[string]int {
	h.t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{h.Broker.Addr()}, Topic: DLQTopic, GroupID: "dlq-check-" + testenv.RandomID(h.t),
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

// GroupLag is how many messages of the usage topic the group has not committed.
func (h *Harness) GroupLag(ctx context.Context, group string) (int64, error) {
	c := &kafka.Client{Addr: kafka.TCP(h.Broker.Addr())}
	parts := make([]int, h.parts)
	reqs := make([]kafka.OffsetRequest, h.parts)
	for i := range parts {
		parts[i], reqs[i] = i, kafka.LastOffsetOf(i)
	}
	of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{Topic: parts}})
	if err != nil {
		return 0, err
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{Topic: reqs}})
	if err != nil {
		return 0, err
	}
	committed := map[int]int64{}
	for _, p := range of.Topics[Topic] {
		committed[p.Partition] = max(p.CommittedOffset, 0)
	}
	var lag int64
	for _, p := range lo.Topics[Topic] {
		lag += p.LastOffset - committed[p.Partition]
	}
	return lag, nil
}

// GroupState describes the group for a failing test: its state, each
// member's assigned partitions and the lag of every partition.
func (h *Harness) GroupState(ctx context.Context, group string) string {
	c := &kafka.Client{Addr: kafka.TCP(h.Broker.Addr())}
	var b strings.Builder
	dg, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return fmt.Sprintf("describe group %s: %v", group, err)
	}
	for _, g := range dg.Groups {
		fmt.Fprintf(&b, "group %s state %s err %v\n", g.GroupID, g.GroupState, g.Error)
		for _, m := range g.Members {
			fmt.Fprintf(&b, "  member %s client %s host %s:", m.MemberID, m.ClientID, m.ClientHost)
			for _, t := range m.MemberAssignments.Topics {
				fmt.Fprintf(&b, " %s%v", t.Topic, t.Partitions)
			}
			b.WriteString("\n")
		}
	}
	parts := make([]int, h.parts)
	reqs := make([]kafka.OffsetRequest, h.parts)
	for i := range parts {
		parts[i], reqs[i] = i, kafka.LastOffsetOf(i)
	}
	of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{Topic: parts}})
	if err != nil {
		return b.String() + err.Error()
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{Topic: reqs}})
	if err != nil {
		return b.String() + err.Error()
	}
	committed := map[int]int64{}
	for _, p := range of.Topics[Topic] {
		committed[p.Partition] = p.CommittedOffset
	}
	for _, p := range lo.Topics[Topic] {
		fmt.Fprintf(&b, "  partition %d: end %d committed %d\n", p.Partition, p.LastOffset, committed[p.Partition])
	}
	return b.String()
}

// WaitGroupDone waits until the group has committed every message.
func (h *Harness) WaitGroupDone(group string, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lag, err := h.GroupLag(h.ctx, group)
		if err == nil && lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("group %s still %d behind after %s (%v)", group, lag, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
