package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
)

// Conn is how creditmeter reaches Kafka: the bootstrap brokers and, for a
// managed cluster, TLS and a SASL mechanism. Every Kafka client (consumer,
// producers, topic management, pings) is built from one Conn, so they all
// connect the same way. config.Kafka.Conn builds it from the settings.
type Conn struct {
	Brokers []string
	TLS     *tls.Config    // nil: plaintext
	SASL    sasl.Mechanism // nil: no authentication
	// Explain, if set, rewrites a connection failure so that it names the
	// setting at fault (a wrong password, an untrusted certificate).
	Explain func(error) error
}

// Plain is a Conn to brokers without TLS or SASL (the development broker).
func Plain(brokers ...string) Conn { return Conn{Brokers: brokers} }

const dialTimeout = 10 * time.Second

// Dialer is a kafka-go Dialer (consumer groups, single connections) with the
// Conn's TLS and SASL. clientID names the client to the broker.
func (c Conn) Dialer(clientID string) *kafka.Dialer {
	return &kafka.Dialer{ClientID: clientID, Timeout: dialTimeout, DualStack: true, TLS: c.TLS, SASLMechanism: c.SASL}
}

// Transport is a kafka-go transport (producers, admin requests) with the
// Conn's TLS and SASL; nil, kafka-go's shared default, for a plain Conn.
// It is an interface so that nil stays a nil RoundTripper.
func (c Conn) Transport() kafka.RoundTripper {
	if c.TLS == nil && c.SASL == nil {
		return nil
	}
	return &kafka.Transport{DialTimeout: dialTimeout, TLS: c.TLS, SASL: c.SASL, ClientID: "creditmeter"}
}

// Client is an admin client of the Conn's brokers.
func (c Conn) Client(timeout time.Duration) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: timeout, Transport: c.Transport()}
}

// closeIdle closes the idle connections of a client's own transport (not
// kafka-go's shared default), so a one-off admin call leaves nothing open.
func closeIdle(cl *kafka.Client) {
	if t, ok := cl.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
}

// ErrNoTLSHandshake is a broker that accepts TCP connections but does not
// complete a TLS handshake: most likely a plaintext listener.
var ErrNoTLSHandshake = errors.New("the broker accepts connections but did not complete a TLS handshake")

// isTLSError is a failure the TLS handshake itself reported (a certificate
// refused, an alert), which says more than ErrNoTLSHandshake would.
func isTLSError(err error) bool {
	var (
		rh  tls.RecordHeaderError
		cv  *tls.CertificateVerificationError
		op  *net.OpError
		unk x509.UnknownAuthorityError
		hn  x509.HostnameError
	)
	return errors.As(err, &rh) || errors.As(err, &cv) || errors.As(err, &unk) || errors.As(err, &hn) ||
		(errors.As(err, &op) && op.Op == "remote error")
}

// tcpReachable says whether a plain TCP connection to addr opens at once.
func tcpReachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (c Conn) explain(err error) error {
	if err == nil || c.Explain == nil {
		return err
	}
	return c.Explain(err)
}

// Ping connects to each broker (TLS handshake and SASL authentication
// included) and asks for its API versions; it returns the first broker that
// fails, explained.
func (c Conn) Ping(ctx context.Context) error {
	if len(c.Brokers) == 0 {
		return errors.New("no brokers")
	}
	d := c.Dialer("creditmeter-ping")
	for _, b := range c.Brokers {
		kc, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			if c.TLS != nil && !isTLSError(err) && tcpReachable(b) {
				err = fmt.Errorf("%w: %w", ErrNoTLSHandshake, err)
			}
			return fmt.Errorf("kafka %s: %w", b, c.explain(err))
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = kc.SetDeadline(dl)
		}
		_, err = kc.ApiVersions()
		kc.Close()
		if err != nil {
			return fmt.Errorf("kafka %s: %w", b, c.explain(err))
		}
	}
	return nil
}
