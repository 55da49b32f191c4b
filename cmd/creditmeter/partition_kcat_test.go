package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Events posted to `serve` (POST /v1/events, keyed by customer id) land on
// the partition librdkafka's murmur2_random partitioner chooses for the same
// key: kcat (installed by deploy/local/install.sh) produces the same keys to
// a topic of the same partition count, and kcat reads both back.
func TestPostedEventsPartitionLikeKcatMurmur2(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		testenv.Unavailable(t, "kcat (Debian package kcat)", "PATH", err)
	}
	const partitions = 7
	b := testenv.Broker(t, partitions, "usage-events", "usage-events-dlq", "kcat-events")
	c := testenv.Config(t)
	_, cc := testenv.ClickHouse(t)
	testenv.Redis(t)
	token := strings.Repeat("m", 40)
	addr := "127.0.0.1:" + freePort(t)
	start(t, "serve", "--engine=false", "--http-addr", addr, "--admin-tokens", token, "--kafka-brokers", b.Addr(),
		"--redis-addr", c.Redis.Addr, "--redis-key-prefix", testenv.Prefix(t),
		"--clickhouse-addr", cc.Addr, "--clickhouse-database", cc.Database)
	base := "http://" + addr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })

	// Keys of every length mod 4 (murmur2's tail), UTF-8, and the Java client's vectors.
	keys := []string{"21", "foobar", "a-little-bit-long-string", "abc", "kundé-ü-1", "x"}
	for i := range 60 {
		keys = append(keys, "cust-"+strconv.Itoa(i*7919)+strings.Repeat("z", i%5))
	}
	var events, lines []string
	now := time.Now().UTC().Format(time.RFC3339)
	for i, k := range keys {
		events = append(events, fmt.Sprintf(`{"id":"kcat-%d","customer_id":%q,"event_name":"email.sent","timestamp":%q}`, i, k, now))
		lines = append(lines, k+"\t{}")
	}
	if code, b := send(t, http.MethodPost, base+"/v1/events", token, `{"events":[`+strings.Join(events, ",")+`]}`); code != http.StatusAccepted {
		t.Fatalf("POST /v1/events: %d %s", code, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	produce := exec.CommandContext(ctx, kcat, "-P", "-b", b.Addr(), "-t", "kcat-events", "-K", "\t",
		"-X", "partitioner=murmur2_random")
	produce.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	read := func(topic string) map[string]int {
		t.Helper()
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, kcat, "-C", "-b", b.Addr(), "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%p\n")
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat -C %s: %v\n%s", topic, err, errOut.String())
		}
		at := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			k, p, ok := strings.Cut(line, "\t")
			n, err := strconv.Atoi(p)
			if !ok || err != nil {
				t.Fatalf("kcat -C %s: line %q", topic, line)
			}
			at[k] = n
		}
		return at
	}
	ours, theirs := read("usage-events"), read("kcat-events")
	used := map[int]bool{}
	for _, k := range keys {
		p, ok := ours[k]
		if !ok {
			t.Errorf("key %q: not on usage-events", k)
			continue
		}
		if q, ok := theirs[k]; !ok || p != q {
			t.Errorf("key %q: partition %d from POST /v1/events, %d (found %v) from kcat -X partitioner=murmur2_random", k, p, q, ok)
		}
		used[p] = true
	}
	if len(used) < partitions {
		t.Errorf("%d keys used %d of %d partitions", len(keys), len(used), partitions)
	}
}
