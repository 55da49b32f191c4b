// Package testenv gives integration tests the real services. A test whose
// service does not answer is skipped, or fails when CREDITMETER_REQUIRE_SERVICES=1
// (as in CI), so a missing service is never silently passed over.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/broker"
	"github.com/creditmeter/creditmeter/internal/config"
)

// RequireServices reports whether a missing service fails the test.
func RequireServices() bool { return os.Getenv("CREDITMETER_REQUIRE_SERVICES") == "1" }

// Unavailable skips t, or fails it when services are required.
func Unavailable(t testing.TB, service, addr string, err error) {
	t.Helper()
	if RequireServices() {
		t.Fatalf("%s at %s is required (CREDITMETER_REQUIRE_SERVICES=1) but unreachable: %v", service, addr, err)
	}
	t.Skipf("%s at %s unreachable (start it with deploy/local/start.sh): %v", service, addr, err)
}

// Config is the default configuration with CREDITMETER_* variables applied.
func Config(t testing.TB) config.Config {
	t.Helper()
	c := config.Default()
	if v := os.Getenv("CREDITMETER_REDIS_ADDR"); v != "" {
		c.Redis.Addr = v
	}
	if v := os.Getenv("CREDITMETER_CLICKHOUSE_ADDR"); v != "" {
		c.ClickHouse.Addr = v
	}
	if v := os.Getenv("CREDITMETER_PROMETHEUS_URL"); v != "" {
		c.Prometheus.URL = v
	}
	return c
}

// Redis returns a client of the real standalone Redis; the keys a test
// writes must start with its Prefix, so parallel tests do not collide.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	addr := Config(t).Redis.Addr
	rc, ok := openRedis(t, "redis", addr).(*redis.Client)
	if !ok {
		t.Fatalf("CREDITMETER_REDIS_ADDR %q is not one standalone Redis (use CREDITMETER_REDIS_CLUSTER_ADDRS for the cluster)", addr)
	}
	return rc
}

// Keyspace is the real Redis and a random key prefix for one test; every key
// under the prefix is deleted when the test ends.
func Keyspace(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rc := Redis(t)
	return rc, KeyspaceOn(t, rc)
}

// Prefix is a random key prefix for one test.
func Prefix(t testing.TB) string {
	t.Helper()
	return "test:" + RandomID(t) + ":"
}

// RandomID is 16 random hex digits.
func RandomID(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// ClickHouse returns a connection to a fresh database of the real ClickHouse,
// dropped when the test ends, and that database's name.
func ClickHouse(t testing.TB) (driver.Conn, archive.ConnConfig) {
	t.Helper()
	c := Config(t).ClickHouse
	cc := archive.ConnConfig{Addr: c.Addr, User: c.User, Password: c.Password, Database: "test_" + RandomID(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := archive.EnsureDatabase(ctx, cc); err != nil {
		Unavailable(t, "clickhouse", c.Addr, err)
	}
	conn, err := archive.Open(ctx, cc)
	if err != nil {
		t.Fatalf("clickhouse: open %s: %v", cc.Database, err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cc.Database)
		conn.Close()
	})
	return conn, cc
}

// Broker starts an embedded Kafka-protocol broker in a temporary directory,
// with the given topics, closed when the test ends.
func Broker(t testing.TB, partitions int, topics ...string) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: partitions, Topics: topics})
	if err != nil {
		t.Fatalf("start embedded broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// SetBrokerMaxMessageBytes sets the broker's message.max.bytes (the largest
// record batch it accepts) so a test does not depend on a default.
func SetBrokerMaxMessageBytes(t testing.TB, addr string, n int) {
	t.Helper()
	setConfig(t, addr, kafka.ResourceTypeBroker, "", "message.max.bytes", n)
}

// SetTopicMaxMessageBytes sets one topic's max.message.bytes, which wins over
// the broker's.
func SetTopicMaxMessageBytes(t testing.TB, addr, topic string, n int) {
	t.Helper()
	setConfig(t, addr, kafka.ResourceTypeTopic, topic, "max.message.bytes", n)
}

func setConfig(t testing.TB, addr string, typ kafka.ResourceType, name, key string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(addr)}
	resp, err := c.AlterConfigs(ctx, &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: typ, ResourceName: name,
		Configs: []kafka.AlterConfigRequestConfig{{Name: key, Value: strconv.Itoa(n)}},
	}}})
	if err != nil {
		t.Fatalf("set %s=%d on %s: %v", key, n, addr, err)
	}
	for _, e := range resp.Errors {
		if e != nil {
			t.Fatalf("set %s=%d on %s: %v", key, n, addr, e)
		}
	}
}

// Archive is ClickHouse with the archive's tables created: a fresh,
// migrated database, dropped when the test ends.
func Archive(t testing.TB) (driver.Conn, archive.ConnConfig) {
	t.Helper()
	conn, cc := ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatalf("clickhouse: migrate %s: %v", cc.Database, err)
	}
	return conn, cc
}
