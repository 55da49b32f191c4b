package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// metricsAddrs keeps, per HTTP address of a test's serve, the address of
// its /metrics listener, the same across restarts.
var metricsAddrs sync.Map

func metricsAddrFor(t *testing.T, httpAddr string) string {
	a, _ := metricsAddrs.LoadOrStore(httpAddr, "127.0.0.1:"+freePort(t))
	return a.(string)
}

// startServeAt is startServe with a known HTTP address and extra flags.
func startServeAt(t *testing.T, h *e2e.Harness, group, httpAddr string, extra ...string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, done: make(chan error, 1)}
	args := append([]string{"serve",
		"--http-addr", httpAddr, "--metrics-addr", metricsAddrFor(t, httpAddr),
		"--kafka-brokers", h.Broker.Addr(), "--kafka-group", group,
		"--redis-addr", testenv.Config(t).Redis.Addr, "--redis-key-prefix", h.Prefix,
		"--clickhouse-addr", h.CC.Addr, "--clickhouse-database", h.CC.Database,
		"--batch-size", "1000", "--linger", "10ms"}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

var lagLine = regexp.MustCompile(`(?m)^creditmeter_consumer_lag\{partition="(\d+)"\} (\S+)$`)

// lagSeries scrapes the /metrics of the serve whose API is at base for
// creditmeter_consumer_lag by partition.
func lagSeries(base string) (map[int]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, ok := metricsAddrs.Load(strings.TrimPrefix(base, "http://"))
	if !ok {
		return nil, fmt.Errorf("no metrics address for %s", base)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.(string)+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	out := map[int]float64{}
	for _, m := range lagLine.FindAllStringSubmatch(string(b), -1) {
		p, _ := strconv.Atoi(m[1])
		v, _ := strconv.ParseFloat(m[2], 64)
		out[p] = v
	}
	return out, nil
}

// waitLag waits until serve exports the lag of every partition of the topic
// with the values want (nil: any value).
func waitLag(t *testing.T, p *serveProc, base string, partitions int, want func(int, float64) bool, timeout time.Duration) {
	t.Helper()
	var got map[int]float64
	var err error
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got, err = lagSeries(base)
		ok := err == nil && len(got) == partitions
		for part, v := range got {
			ok = ok && want(part, v)
		}
		if ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("creditmeter_consumer_lag after %s: %v (%v), want all %d partitions; serve's log:\n%s", timeout, got, err, partitions, tail(p.out.String()))
}

func tail(s string) string {
	if len(s) > 8000 {
		return s[len(s)-8000:]
	}
	return s
}

// Issue 13.1: a ~1 MB undecodable value on the usage topic (as kcat sends it
// with message.max.bytes raised) goes to the DLQ truncated with its original
// position, the events after it on the same partition are applied, nothing
// stalls, and after a restart the engine is ready and exports its lag.
func TestPoisonMessageDoesNotStall(t *testing.T) {
	h := e2e.New(t, 2)
	testenv.SetBrokerMaxMessageBytes(t, h.Broker.Addr(), 1_048_588)
	h.Subscribe(4)

	poison := make([]byte, 1_048_400)
	if _, err := rand.Read(poison); err != nil {
		t.Fatal(err)
	}
	kw := &kafka.Writer{Addr: kafka.TCP(h.Broker.Addr()), Topic: e2e.Topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchBytes: 2 << 20}
	msg := kafka.Message{Key: []byte("cust-000"), Value: poison}
	if err := kw.WriteMessages(t.Context(), msg); err != nil {
		t.Fatalf("produce the poison message: %v", err)
	}
	kw.Close()
	// Normal events after it, on every partition (cust-000's included).
	st := h.Generate(13, 400, 0, 0)
	h.Produce(st.Msgs)

	httpAddr := "127.0.0.1:" + freePort(t)
	base := "http://" + httpAddr
	p := startServeAt(t, h, "poison", httpAddr, "--kafka-max-message-bytes", "1048588")
	p.waitDone(h, "poison", 2*time.Minute)
	h.Verify()

	// The dead letter: truncated, saying so, with the original position.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{h.Broker.Addr()}, Topic: e2e.DLQTopic, GroupID: "dlq-check",
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond, MaxBytes: 4 << 20})
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	dl, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	hd := map[string]string{}
	for _, x := range dl.Headers {
		hd[x.Key] = string(x.Value)
	}
	// The poison was the first message of its partition.
	pp := (&kafka.Hash{}).Balance(kafka.Message{Key: []byte("cust-000")}, 0, 1)
	if hd[ingest.HeaderTruncated] != "1048400" || hd[ingest.HeaderReason] != ingest.ReasonMalformed ||
		hd[ingest.HeaderPartition] != strconv.Itoa(pp) || hd[ingest.HeaderOffset] != "0" || hd[ingest.HeaderTopic] != e2e.Topic {
		t.Errorf("dead letter headers %v", hd)
	}
	if len(dl.Value) == 0 || len(dl.Value) >= len(poison) || string(dl.Value) != string(poison[:len(dl.Value)]) {
		t.Errorf("dead letter value of %d bytes, want a prefix of the %d-byte original", len(dl.Value), len(poison))
	}
	waitLag(t, p, base, 2, func(int, float64) bool { return true }, 20*time.Second)

	// After a restart: ready, and the lag of every partition is exported
	// before any new message arrives.
	p.stop()
	p = startServeAt(t, h, "poison", httpAddr, "--kafka-max-message-bytes", "1048588")
	eventually(t, "readyz after restart", func() error { return get(base + "/readyz") })
	waitLag(t, p, base, 2, func(_ int, v float64) bool { return v == 0 }, 30*time.Second)

	// And new events still flow.
	emails(h, "cust-001", "after-restart", 5)
	for i := range 5 {
		h.Subs["cust-001"].Usage += credit.Credits(1)
		h.Subs["cust-001"].Events[fmt.Sprintf("after-restart-%d", i)] = credit.Credits(1)
	}
	p.waitDone(h, "poison", time.Minute)
	p.stop()
	h.Verify()
}

// The lag of every assigned partition is exported right after a restart,
// before any new message arrives (ConsumerLagHigh needs the series).
func TestLagExportedAfterRestart(t *testing.T) {
	h := e2e.New(t, 3)
	h.Subscribe(6)
	st := h.Generate(14, 300, 0, 0)
	h.Produce(st.Msgs)
	httpAddr := "127.0.0.1:" + freePort(t)
	base := "http://" + httpAddr
	p := startServeAt(t, h, "lag", httpAddr)
	p.waitDone(h, "lag", time.Minute)
	p.stop()
	p = startServeAt(t, h, "lag", httpAddr)
	waitLag(t, p, base, 3, func(_ int, v float64) bool { return v == 0 }, 30*time.Second)
	p.stop()
}
