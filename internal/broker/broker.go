// Package broker runs the embedded development Kafka-protocol broker (franz-go's
// kfake) with its data and committed offsets on disk.
package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/creditmeter/creditmeter/ingest"
)

// Options configure Start.
type Options struct {
	Listen     string   // host:port on loopback; port 0 picks a free one
	DataDir    string   // required: topics and offsets persist here
	Partitions int      // partitions of topics the broker creates
	Topics     []string // topics created at start when missing
	Logger     *slog.Logger
	// TLS, if set, makes the listener TLS only (its Certificates serve it).
	TLS *tls.Config
	// SASL users, if any, make authentication required (SASL_PLAINTEXT, or
	// SASL_SSL with TLS).
	SASL []SASLUser
}

// SASLUser is a user the broker accepts.
type SASLUser struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	User      string
	Password  string
}

// ParseMechanism is the kfake name of a mechanism given as in
// --kafka-sasl-mechanism (plain, scram-sha-256, scram-sha-512).
func ParseMechanism(m string) (string, error) {
	switch u := strings.ToUpper(strings.TrimSpace(m)); u {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		return u, nil
	}
	return "", fmt.Errorf("want plain, scram-sha-256 or scram-sha-512, got %q", m)
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	Topics  []ingest.TopicStatus
}

// Start starts a single-node broker and makes sure the topics exist.
func Start(ctx context.Context, o Options) (*Broker, error) {
	if o.DataDir == "" {
		return nil, errors.New("broker: DataDir is required")
	}
	if o.Partitions < 1 {
		return nil, fmt.Errorf("broker: Partitions must be >= 1, got %d", o.Partitions)
	}
	_, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker: listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen port %q: %w", portStr, err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	listen := o.Listen
	opts := []kfake.Opt{
		kfake.Ports(port),
		kfake.DataDir(o.DataDir),
		kfake.DefaultNumPartitions(o.Partitions),
		kfake.ClusterID("creditmeter-dev"),
		kfake.WithLogger(slogLogger{logger}),
		// kfake binds 127.0.0.1; honour the host we were given (e.g. ::1).
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, listen) }),
	}
	// The broker's own client (topic creation) authenticates and connects
	// like any other.
	self := ingest.Conn{}
	if o.TLS != nil {
		if len(o.TLS.Certificates) == 0 {
			return nil, errors.New("broker: TLS needs a certificate")
		}
		opts = append(opts, kfake.TLS(o.TLS))
		self.TLS = pinned(o.TLS.Certificates[0])
	}
	if len(o.SASL) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range o.SASL {
			m, err := ParseMechanism(u.Mechanism)
			if err != nil {
				return nil, fmt.Errorf("broker: SASL user %q: %w", u.User, err)
			}
			if u.User == "" || u.Password == "" {
				return nil, errors.New("broker: a SASL user needs a name and a password")
			}
			opts = append(opts, kfake.Superuser(m, u.User, u.Password))
		}
		if self.SASL, err = selfMechanism(o.SASL[0]); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s: %w", o.Listen, err)
	}
	b := &Broker{cluster: cluster, addr: cluster.ListenAddrs()[0]}
	if len(o.Topics) > 0 {
		self.Brokers = []string{b.addr}
		b.Topics, err = self.EnsureTopics(ctx, o.Partitions, o.Topics...)
		if err != nil {
			cluster.Close()
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	return b, nil
}

// Addr is the host:port the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and flushes its state to disk.
func (b *Broker) Close() { b.cluster.Close() }

// pinned trusts exactly the broker's own certificate: its client talks to
// itself on loopback, whatever CA (or none) signed the certificate. It shows
// the same certificate, in case the listener requires client certificates.
func pinned(own tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{own},
		InsecureSkipVerify: true, // replaced by the check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || len(own.Certificate) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own.Certificate[0]) {
				return errors.New("broker: not our own certificate")
			}
			return nil
		},
	}
}

func selfMechanism(u SASLUser) (sasl.Mechanism, error) {
	m, err := ParseMechanism(u.Mechanism)
	if err != nil {
		return nil, err
	}
	switch m {
	case "PLAIN":
		return plain.Mechanism{Username: u.User, Password: u.Password}, nil
	case "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, u.User, u.Password)
	}
	return scram.Mechanism(scram.SHA256, u.User, u.Password)
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var lv slog.Level
	switch level {
	case kfake.LogLevelError:
		lv = slog.LevelError
	case kfake.LogLevelWarn:
		lv = slog.LevelWarn
	case kfake.LogLevelInfo:
		lv = slog.LevelInfo
	default:
		lv = slog.LevelDebug
	}
	if !s.l.Enabled(context.Background(), lv) {
		return
	}
	s.l.Log(context.Background(), lv, fmt.Sprintf(msg, args...), "component", "kfake")
}
