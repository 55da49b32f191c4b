package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// The README's first command ends in creditmeter demo: it must pass, with
// every step as expected, on the real services (here an isolated world: a
// test broker, Redis key prefix and ClickHouse database).
func TestDemoPlaysTheSeedStory(t *testing.T) {
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	_, prefix := testenv.Keyspace(t)
	_, cc := testenv.ClickHouse(t)
	cmd := exec.Command(bin, "demo", "--kafka-brokers", b.Addr(), "--redis-addr", testenv.Config(t).Redis.Addr,
		"--redis-key-prefix", prefix, "--clickhouse-addr", cc.Addr, "--clickhouse-database", cc.Database)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Only event-based meters are currently supported for credit consumption mapping",
		"1 AIT = 0.04 USD (subscription), included 100 AIT promotional, expires never",
		"LOW BALANCE",
		"below the plan's minimum purchase of 250 AIT",
		"charged 20.00 USD, balance 510 AIT",
		"total due 20 USD",
		"Demo complete: every step gave the expected result.",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(string(out), "✗") {
		t.Errorf("a step failed:\n%s", out)
	}
}
