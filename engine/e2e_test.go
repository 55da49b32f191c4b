package engine_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/internal/e2e"
)

// run starts e and returns a stop function that cancels it and waits.
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

// Test 1 and 5 of the engine issue: 200,000 events over 200 subscriptions
// with producer duplicates and late events, plus malformed, unknown-customer
// and unratable events, through the embedded broker, real Redis and real
// ClickHouse. Balances, rated_usage and credit_ledger must be exactly right
// and the bad events must be in the DLQ with their reasons.
func TestStreamExact(t *testing.T) {
	h := e2e.New(t, 4)
	h.Subscribe(200)
	const valid, dups, bad = 200_000, 2_000, 150
	st := h.Generate(1, valid, dups, bad)
	h.Produce(st.Msgs)

	e, m, src := h.NewEngine("engine-e2e", engine.Config{})
	defer src.Close()
	start := time.Now()
	stop := run(t, e)
	e2e.WaitConsumed(t, m, len(st.Msgs), 3*time.Minute)
	took := time.Since(start)
	stop()
	t.Logf("%d events in %s: %.0f events/s end to end (Kafka → Redis → ClickHouse, commits included)",
		len(st.Msgs), took.Round(time.Millisecond), float64(len(st.Msgs))/took.Seconds())

	if got := testutil.ToFloat64(m.Rated); got != valid+dups {
		t.Errorf("rated %v lines, want %d (one per valid event, duplicates included)", got, valid+dups)
	}
	if got := testutil.ToFloat64(m.Applied); got != valid {
		t.Errorf("applied %v events, want %d", got, valid)
	}
	if got := testutil.ToFloat64(m.Duplicates.WithLabelValues("id")); got != dups {
		t.Errorf("duplicate ids %v, want %d", got, dups)
	}
	h.Verify()
	got := h.DeadLetters(bad)
	for reason, n := range st.DLQ {
		if got[reason] != n {
			t.Errorf("DLQ reason %s: %d, want %d (all: %v)", reason, got[reason], n, got)
		}
		if v := testutil.ToFloat64(m.DeadLetters.WithLabelValues(reason)); v != float64(n) {
			t.Errorf("DLQ metric %s = %v, want %d", reason, v, n)
		}
	}
}

// proxy forwards TCP to target until cut; cut closes every connection and
// refuses new ones until restore, as if the server were down.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		target := p.target
		p.mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close(); c.Close() }()
		go func() { _, _ = io.Copy(c, up); up.Close(); c.Close() }()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// retarget sends new connections to target (a failover behind one address).
func (p *proxy) retarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Test 4: ClickHouse goes away mid-stream for some seconds. The engine stops
// consuming, retries with backoff, reports itself not ready and in
// backpressure, and when ClickHouse is back everything is exact.
func TestArchiveOutage(t *testing.T) {
	h := e2e.New(t, 2)
	h.Subscribe(20)
	p := newProxy(t, h.CC.Addr)
	cc := h.CC
	cc.Addr = p.addr()
	conn, err := archive.Open(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h.Writer = archive.NewWriter(conn) // the engine archives through the proxy

	st := h.Generate(4, 20_000, 200, 0)
	h.Produce(st.Msgs[:10_000])
	e, m, src := h.NewEngine("engine-outage", engine.Config{BatchSize: 500, RetryMax: 500 * time.Millisecond})
	defer src.Close()
	stop := run(t, e)
	e2e.WaitConsumed(t, m, 10_000, time.Minute)

	p.cut()
	h.Produce(st.Msgs[10_000:])
	deadline := time.Now().Add(20 * time.Second)
	for e.Ready() == nil || testutil.ToFloat64(m.Backpressure) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the engine never reported the archive outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "archive") {
		t.Fatalf("readiness during the outage: %v, want the archive stage named", err)
	}
	stalled := testutil.ToFloat64(m.Consumed)
	time.Sleep(3 * time.Second)
	if got := testutil.ToFloat64(m.Consumed); got != stalled {
		t.Errorf("consumed went from %v to %v while ClickHouse was down; want no consumption", stalled, got)
	}
	if testutil.ToFloat64(m.Retries.WithLabelValues("archive")) == 0 {
		t.Error("no archive retries counted")
	}
	p.restore()
	e2e.WaitConsumed(t, m, len(st.Msgs), time.Minute)
	if err := e.Ready(); err != nil {
		t.Errorf("still not ready after ClickHouse returned: %v", err)
	}
	stop()
	h.Verify()
}
