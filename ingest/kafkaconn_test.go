package ingest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/broker"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// secureBroker starts the development broker with a TLS listener (a
// certificate of a CA made for the test) and one SASL user.
func secureBroker(t *testing.T, files testenv.TLSFiles, mech, user, pass string, topics ...string) *broker.Broker {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 3, Topics: topics,
		TLS:  &tls.Config{Certificates: []tls.Certificate{cert}},
		SASL: []broker.SASLUser{{Mechanism: mech, User: user, Password: pass}}})
	if err != nil {
		t.Fatalf("start broker with TLS and SASL %s: %v", mech, err)
	}
	t.Cleanup(b.Close)
	return b
}

// Every Kafka client of creditmeter (topics, producers, consumer group,
// lag, ping) works over TLS with SASL PLAIN and SCRAM, from one Conn built
// from the settings; a wrong password or CA fails naming the setting.
func TestConnTLSAndSASL(t *testing.T) {
	files := testenv.GenerateTLS(t)
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			const user, pass = "creditmeter", "s3cret-Pa55"
			b := secureBroker(t, files, mech, user, pass, "usage-events", "usage-events-dlq")
			pwFile := filepath.Join(t.TempDir(), "kafka-password")
			if err := os.WriteFile(pwFile, []byte(pass+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			k := config.Default().Kafka
			k.Brokers = []string{b.Addr()}
			k.TLS, k.TLSCAFile = true, files.CA
			k.SASLMechanism, k.SASLUsername, k.SASLPasswordFile = mech, user, pwFile
			conn, err := k.Conn()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := conn.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
			st, err := conn.EnsureTopics(ctx, 2, "usage-events", "more-events")
			if err != nil {
				t.Fatalf("ensure topics: %v", err)
			}
			if st[0].Created || st[0].Partitions != 3 || !st[1].Created || st[1].Partitions != 2 {
				t.Errorf("topics: %+v", st)
			}

			w := ingest.NewWriters(nil, "usage-events", "usage-events-dlq", ingest.WithConn(conn))
			defer w.Close()
			var msgs []kafka.Message
			for i := range 10 {
				msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "c%d", i%4), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
			}
			if err := w.PublishRaw(ctx, msgs...); err != nil {
				t.Fatalf("produce: %v", err)
			}
			c := mustConsumer(t, ingest.ConsumerConfig{Conn: conn, Topic: "usage-events", Group: "g-" + mech, MaxWait: 50 * time.Millisecond})
			defer c.Close()
			var got []kafka.Message
			for len(got) < len(msgs) {
				batch, err := c.Fetch(ctx, 10, 50*time.Millisecond)
				if err != nil {
					t.Fatalf("consume: %v", err)
				}
				got = append(got, batch...)
			}
			if err := w.SendDLQ(ctx, []ingest.DeadLetter{{Msg: got[0], Reason: ingest.ReasonMalformed}}); err != nil {
				t.Fatalf("dead letter: %v", err)
			}
			if err := c.Commit(ctx, got); err != nil {
				t.Fatalf("commit: %v", err)
			}
			lag, err := c.AssignedLag(ctx)
			if err != nil {
				t.Fatalf("lag: %v", err)
			}
			if len(lag) != 3 {
				t.Errorf("lag of %d partitions, want 3: %v", len(lag), lag)
			}
			for p, n := range lag {
				if n != 0 {
					t.Errorf("partition %d: lag %d after commit", p, n)
				}
			}

			// TLS to a plaintext listener names --kafka-tls.
			plain := testenv.Broker(t, 1)
			tk := k
			tk.Brokers = []string{plain.Addr()}
			tconn, err := tk.Conn()
			if err != nil {
				t.Fatal(err)
			}
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			err = tconn.Ping(pctx)
			pcancel()
			var tse *config.SettingError
			if !errors.As(err, &tse) || tse.Flag != "kafka-tls" {
				t.Errorf("TLS to a plaintext broker: want an error naming --kafka-tls, got %v", err)
			}
			// Without TLS and SASL the broker cannot be used.
			if err := ingest.Plain(b.Addr()).Ping(ctx); err == nil {
				t.Error("a plaintext client without SASL reached the TLS and SASL broker")
			}
			// A wrong password names the setting, never the password.
			bad := k
			bad.SASLPasswordFile, bad.SASLPassword = "", "wrong-Pa55word"
			badConn, err := bad.Conn()
			if err != nil {
				t.Fatal(err)
			}
			err = badConn.Ping(ctx)
			t.Logf("wrong password: %v", err)
			var se *config.SettingError
			if !errors.As(err, &se) || se.Flag != "kafka-sasl-password" || strings.Contains(err.Error(), "wrong-Pa55word") {
				t.Errorf("wrong password: want an error naming --kafka-sasl-password without the password, got %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), "setting --kafka-sasl-password (CREDITMETER_KAFKA_SASL_PASSWORD)") {
				t.Errorf("wrong password error does not name the setting: %v", err)
			}
			// A broker certificate signed by a CA we do not trust.
			untrusted := k
			untrusted.TLSCAFile = files.OtherCA
			uc, err := untrusted.Conn()
			if err != nil {
				t.Fatal(err)
			}
			if err := uc.Ping(ctx); !errors.As(err, &se) || se.Flag != "kafka-tls-ca-file" {
				t.Errorf("untrusted CA: want an error naming --kafka-tls-ca-file, got %v", err)
			}
		})
	}
}

// With a listener that requires client certificates, --kafka-tls-cert-file
// and --kafka-tls-key-file are presented; without them the handshake fails
// naming the setting.
func TestConnMutualTLS(t *testing.T) {
	files := testenv.GenerateTLS(t)
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(files.CA)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 1, Topics: []string{"usage-events"},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := config.Default().Kafka
	k.Brokers, k.TLS, k.TLSCAFile = []string{b.Addr()}, true, files.CA
	anon, err := k.Conn()
	if err != nil {
		t.Fatal(err)
	}
	err = anon.Ping(ctx)
	var se *config.SettingError
	if !errors.As(err, &se) || se.Flag != "kafka-tls-cert-file" {
		t.Errorf("without a client certificate: want an error naming --kafka-tls-cert-file, got %v", err)
	}
	k.TLSCertFile, k.TLSKeyFile = files.Cert, files.Key
	conn, err := k.Conn()
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	w := ingest.NewWriters(nil, "usage-events", "usage-events-dlq", ingest.WithConn(conn))
	defer w.Close()
	if err := w.PublishRaw(ctx, kafka.Message{Key: []byte("c"), Value: []byte("{}")}); err != nil {
		t.Fatalf("produce with the client certificate: %v", err)
	}
}

// SASL without TLS (a SASL_PLAINTEXT listener on a private network): the
// same clients authenticate with each mechanism; a wrong password is named.
func TestConnSASLWithoutTLS(t *testing.T) {
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			const user, pass = "creditmeter", "pl41n-Pa55"
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			b, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 2, Topics: []string{"usage-events"},
				SASL: []broker.SASLUser{{Mechanism: mech, User: user, Password: pass}}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			k := config.Default().Kafka
			k.Brokers = []string{b.Addr()}
			k.SASLMechanism, k.SASLUsername, k.SASLPassword = mech, user, pass
			conn, err := k.Conn()
			if err != nil {
				t.Fatal(err)
			}
			if conn.TLS != nil {
				t.Fatal("TLS on without --kafka-tls")
			}
			if err := conn.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
			w := ingest.NewWriters(nil, "usage-events", "usage-events-dlq", ingest.WithConn(conn))
			defer w.Close()
			if err := w.PublishRaw(ctx, kafka.Message{Key: []byte("c1"), Value: []byte(`{}`)}); err != nil {
				t.Fatalf("produce: %v", err)
			}
			c := mustConsumer(t, ingest.ConsumerConfig{Conn: conn, Topic: "usage-events", Group: "g-" + mech, MaxWait: 50 * time.Millisecond})
			defer c.Close()
			got, err := c.Fetch(ctx, 1, 10*time.Millisecond)
			if err != nil || len(got) != 1 {
				t.Fatalf("consume: %d messages, %v", len(got), err)
			}
			if err := c.Commit(ctx, got); err != nil {
				t.Fatalf("commit: %v", err)
			}
			bad := k
			bad.SASLPassword = "wrong-" + pass
			badConn, err := bad.Conn()
			if err != nil {
				t.Fatal(err)
			}
			err = badConn.Ping(ctx)
			var se *config.SettingError
			if !errors.As(err, &se) || se.Flag != "kafka-sasl-password" || strings.Contains(err.Error(), pass) {
				t.Errorf("wrong password: want an error naming --kafka-sasl-password without the password, got %v", err)
			}
		})
	}
}
