package ingest_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// A member that dies without leaving the group (SIGKILL) keeps its partitions
// until its session times out: a shorter --kafka-session-timeout hands them
// to the surviving member sooner than the 10 s default.
func TestShorterSessionTimeoutHandsPartitionsOverFaster(t *testing.T) {
	type result struct {
		session, handover time.Duration
	}
	cases := []ingest.ConsumerConfig{
		{SessionTimeout: 2 * time.Second, HeartbeatInterval: 300 * time.Millisecond, RebalanceTimeout: 2 * time.Second},
		{}, // the defaults
	}
	results := make([]result, len(cases))
	t.Run("kill", func(t *testing.T) {
		for i, c := range cases {
			t.Run(fmt.Sprint("session=", cmp.Or(c.SessionTimeout, ingest.DefaultSessionTimeout)), func(t *testing.T) {
				t.Parallel() // two brokers: the runs overlap
				results[i] = result{c.SessionTimeout, handover(t, c)}
			})
		}
	})
	if t.Failed() {
		return
	}
	short, def := results[0], results[1]
	t.Logf("handover after SIGKILL: session %s: %s; default session (10s): %s", short.session, short.handover.Round(10*time.Millisecond), def.handover.Round(10*time.Millisecond))
	if short.handover < short.session {
		t.Errorf("handover %s is shorter than the session timeout %s: the killed member left the group?", short.handover, short.session)
	}
	if short.handover > short.session+3*time.Second {
		t.Errorf("with a %s session timeout the partitions moved after %s, want within %s", short.session, short.handover, short.session+3*time.Second)
	}
	if def.handover < 10*time.Second {
		t.Errorf("with the default session timeout the partitions moved after %s, want at least 10s", def.handover)
	}
}

// handover starts a consumer in a child process and one here in the same
// group, SIGKILLs the child and returns how long until this one holds every
// partition.
func handover(t *testing.T, timeouts ingest.ConsumerConfig) time.Duration {
	const parts = 4
	b := testenv.Broker(t, parts, "usage-events")
	setBrokerInt(t, b.Addr(), "group.min.session.timeout.ms", 1000) // the broker default (6 s) refuses 2 s
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConsumerChildProcess$", "-test.v")
	child.Env = append(os.Environ(), "CREDITMETER_TEST_CHILD_BROKER="+b.Addr(),
		fmt.Sprintf("CREDITMETER_TEST_CHILD_TIMEOUTS=%s,%s,%s", timeouts.SessionTimeout, timeouts.HeartbeatInterval, timeouts.RebalanceTimeout))
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = child.Stdout
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	joined := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "child joined") {
				close(joined)
			}
		}
	}()
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("the child consumer did not join the group")
	}

	c := timeouts
	c.Brokers, c.Topic, c.Group = []string{b.Addr()}, "usage-events", "failover"
	me := mustConsumer(t, c)
	defer me.Close()
	holds := func(n int) bool {
		lags, err := me.AssignedLag(ctx)
		return err == nil && len(lags) == n
	}
	for !holds(parts / 2) { // the group is split between the two members
		if ctx.Err() != nil {
			t.Fatal("the partitions were never split between the two members")
		}
		fetchBriefly(ctx, me)
	}
	killed := time.Now()
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for !holds(parts) {
		if ctx.Err() != nil {
			t.Fatalf("the surviving member never got every partition (session timeout %s)", timeouts.SessionTimeout)
		}
		fetchBriefly(ctx, me)
	}
	return time.Since(killed)
}

func fetchBriefly(ctx context.Context, c *ingest.Consumer) {
	fctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, _ = c.Fetch(fctx, 1, 10*time.Millisecond)
}

// TestConsumerChildProcess is the member handover kills; it runs only as
// the child of TestShorterSessionTimeoutHandsPartitionsOverFaster.
func TestConsumerChildProcess(t *testing.T) {
	addr := os.Getenv("CREDITMETER_TEST_CHILD_BROKER")
	if addr == "" {
		t.Skip("only run as a child process")
	}
	var d [3]time.Duration
	for i, s := range strings.Split(os.Getenv("CREDITMETER_TEST_CHILD_TIMEOUTS"), ",") {
		d[i], _ = time.ParseDuration(s)
	}
	c := mustConsumer(t, ingest.ConsumerConfig{Brokers: []string{addr}, Topic: "usage-events", Group: "failover",
		SessionTimeout: d[0], HeartbeatInterval: d[1], RebalanceTimeout: d[2]})
	ctx := context.Background()
	for {
		lags, err := c.AssignedLag(ctx)
		if err == nil && len(lags) > 0 {
			fmt.Println("child joined")
			break
		}
		fetchBriefly(ctx, c)
	}
	for { // a live member: keeps heartbeating until SIGKILLed
		fetchBriefly(ctx, c)
	}
}

func setBrokerInt(t *testing.T, addr, key string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := (&kafka.Client{Addr: kafka.TCP(addr)}).AlterConfigs(ctx, &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeBroker, Configs: []kafka.AlterConfigRequestConfig{{Name: key, Value: fmt.Sprint(n)}},
	}}})
	if err == nil {
		for _, e := range resp.Errors {
			if e != nil {
				err = e
			}
		}
	}
	if err != nil {
		t.Fatalf("set %s=%d on %s: %v", key, n, addr, err)
	}
}
