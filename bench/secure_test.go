package bench

import (
	"context"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/broker"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// The bench's clients (topic management, producer, consumer, dead letters)
// connect over TLS with SCRAM like serve's: the e2e scenario stays exact
// against a broker that requires both.
func TestRunE2EOverSASLSSL(t *testing.T) {
	testenv.Redis(t)
	testenv.ClickHouse(t)
	files := testenv.GenerateTLS(t)
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 2,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, SASL: []broker.SASLUser{{Mechanism: "scram-sha-256", User: "bench", Password: "b3nch-pass"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := config.Default().Kafka
	k.Brokers, k.TLS, k.TLSCAFile = []string{b.Addr()}, true, files.CA
	k.SASLMechanism, k.SASLUsername, k.SASLPassword = "scram-sha-256", "bench", "b3nch-pass"
	conn, err := k.Conn()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testenv.Config(t)
	rep, err := Run(ctx, Options{
		World: WorldConfig{Brokers: conn.Brokers, Kafka: conn, Redis: cfg.Redis, CHAddr: cfg.ClickHouse.Addr, CHUser: cfg.ClickHouse.User,
			Partitions: 2, Customers: 10},
		Scenarios: []string{ScenarioE2E}, Events: 2000, DupRate: 0.02, LateRate: 0.02, Stdout: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.E2E.Exact || rep.E2E.Events != 2000 {
		t.Errorf("e2e over SASL_SSL: %+v", rep.E2E)
	}
}
