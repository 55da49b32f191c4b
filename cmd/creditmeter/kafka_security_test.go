package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// `creditmeter broker` with a TLS listener and a SCRAM-SHA-512 user: doctor
// and serve connect with --kafka-tls and --kafka-sasl-*, events posted to the
// API flow through the engine to the dead-letter topic over SASL_SSL, and
// each wrong setting fails naming itself, never printing the password.
func TestBrokerDoctorAndServeOverSASLSSL(t *testing.T) {
	files := testenv.GenerateTLS(t)
	const user, pass = "creditmeter", "Br0ker-s3cret"
	pw := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pw, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + freePort(t)
	start(t, "broker", "--listen", addr, "--data-dir", t.TempDir(), "--partitions", "2",
		"--tls-cert-file", files.Cert, "--tls-key-file", files.Key,
		"--sasl-mechanism", "scram-sha-512", "--sasl-username", user, "--sasl-password-file", pw)
	tlsArgs := []string{"--kafka-brokers", addr, "--kafka-tls", "--kafka-tls-ca-file", files.CA}
	saslArgs := []string{"--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-username", user}
	secure := append(append(append([]string{}, tlsArgs...), saslArgs...), "--kafka-sasl-password-file", pw)
	doctor := func(env []string, args ...string) (string, error) {
		return run(t, env, append([]string{"doctor", "--only", "kafka"}, args...)...)
	}
	eventually(t, "doctor over SASL_SSL", func() error { _, err := doctor(nil, secure...); return err })
	out, err := doctor(nil, secure...)
	if err != nil || !strings.Contains(out, "TLS, SASL SCRAM-SHA-512 as "+user) {
		t.Errorf("doctor over SASL_SSL: %v\n%s", err, out)
	}

	for _, c := range []struct {
		name, want string
		env, args  []string
	}{
		{"wrong password", "setting --kafka-sasl-password (CREDITMETER_KAFKA_SASL_PASSWORD)",
			[]string{"CREDITMETER_KAFKA_SASL_PASSWORD=not-" + pass}, append(append([]string{}, tlsArgs...), saslArgs...)},
		{"wrong user", "setting --kafka-sasl-password-file (CREDITMETER_KAFKA_SASL_PASSWORD_FILE)",
			nil, append(append([]string{}, tlsArgs...), "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-username", "nobody", "--kafka-sasl-password-file", pw)},
		{"untrusted CA", "setting --kafka-tls-ca-file",
			nil, append([]string{"--kafka-brokers", addr, "--kafka-tls", "--kafka-tls-ca-file", files.OtherCA, "--kafka-sasl-password-file", pw}, saslArgs...)},
		{"wrong server name", "setting --kafka-tls-server-name",
			nil, append(append([]string{}, secure...), "--kafka-tls-server-name", "kafka.example.com")},
		{"no TLS", "setting --kafka-tls (CREDITMETER_KAFKA_TLS)",
			nil, append([]string{"--kafka-brokers", addr, "--kafka-sasl-password-file", pw}, saslArgs...)},
	} {
		out, err := doctor(c.env, c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: doctor must fail naming %q: %v\n%s", c.name, c.want, err, out)
		}
		if strings.Contains(out, pass) {
			t.Errorf("%s: doctor printed the password:\n%s", c.name, out)
		}
	}
	// Nor does --help show a password given by a variable.
	for _, sub := range []string{"serve", "doctor", "broker"} {
		out, _ := run(t, []string{"CREDITMETER_KAFKA_SASL_PASSWORD=" + pass, "CREDITMETER_BROKER_SASL_PASSWORD=" + pass}, sub, "--help")
		if strings.Contains(out, pass) || (sub != "broker" && !strings.Contains(out, "--kafka-sasl-password-file")) {
			t.Errorf("%s --help shows the password or lacks the SASL settings:\n%s", sub, out)
		}
	}

	// serve over SASL_SSL: POST /v1/events produces, the engine consumes and
	// dead-letters the event of an unknown customer.
	c := testenv.Config(t)
	_, cc := testenv.ClickHouse(t)
	testenv.Redis(t)
	token := strings.Repeat("k", 40)
	httpAddr := "127.0.0.1:" + freePort(t)
	start(t, append([]string{"serve", "--http-addr", httpAddr, "--admin-tokens", token,
		"--redis-addr", c.Redis.Addr, "--redis-key-prefix", testenv.Prefix(t),
		"--clickhouse-addr", cc.Addr, "--clickhouse-database", cc.Database}, secure...)...)
	base := "http://" + httpAddr
	eventually(t, "serve ready over SASL_SSL", func() error { return get(base + "/readyz") })
	ev := `{"events":[{"id":"evt-tls-1","customer_id":"nobody-` + testenv.RandomID(t) + `","event_name":"email.sent","timestamp":"` +
		time.Now().UTC().Format(time.RFC3339) + `"}]}`
	if code, b := send(t, http.MethodPost, base+"/v1/events", token, ev); code != http.StatusAccepted {
		t.Fatalf("POST /v1/events over SASL_SSL: %d %s", code, b)
	}
	k := config.Default().Kafka
	k.Brokers, k.TLS, k.TLSCAFile = []string{addr}, true, files.CA
	k.SASLMechanism, k.SASLUsername, k.SASLPassword = "scram-sha-512", user, pass
	conn, err := k.Conn()
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: conn.Brokers, Dialer: conn.Dialer("dlq-check"), Topic: k.DLQTopic,
		GroupID: "dlq-check-" + testenv.RandomID(t), StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("no dead letter over SASL_SSL: %v", err)
	}
	reason := ""
	for _, h := range m.Headers {
		if h.Key == ingest.HeaderReason {
			reason = string(h.Value)
		}
	}
	if reason != ingest.ReasonUnknownCust || !strings.Contains(string(m.Value), "evt-tls-1") {
		t.Errorf("dead letter reason %q value %s", reason, m.Value)
	}
}
