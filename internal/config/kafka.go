package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/spf13/pflag"

	"github.com/creditmeter/creditmeter/ingest"
)

// SASL mechanisms of --kafka-sasl-mechanism.
var kafkaSASLMechanisms = []string{"plain", "scram-sha-256", "scram-sha-512"}

// BindKafkaSecurity registers only the --kafka-tls* and --kafka-sasl-*
// flags (for a command that has its own --kafka-brokers).
func (c *Config) BindKafkaSecurity(fs *pflag.FlagSet) { c.bindKafkaSecurity(fs) }

func (c *Config) bindKafkaSecurity(fs *pflag.FlagSet) {
	k := &c.Kafka
	fs.BoolVar(&k.TLS, "kafka-tls", k.TLS, "connect to the brokers over TLS (SSL / SASL_SSL listeners)")
	fs.StringVar(&k.TLSCAFile, "kafka-tls-ca-file", k.TLSCAFile, "PEM file of the CAs that sign the brokers' certificates (default: the system's CAs)")
	fs.StringVar(&k.TLSCertFile, "kafka-tls-cert-file", k.TLSCertFile, "PEM client certificate for mutual TLS (with --kafka-tls-key-file)")
	fs.StringVar(&k.TLSKeyFile, "kafka-tls-key-file", k.TLSKeyFile, "PEM private key of --kafka-tls-cert-file")
	fs.StringVar(&k.TLSServerName, "kafka-tls-server-name", k.TLSServerName, "name the brokers' certificates must carry (default: each broker's host)")
	fs.BoolVar(&k.TLSInsecureSkipVerify, "kafka-tls-insecure-skip-verify", k.TLSInsecureSkipVerify, "do not verify the brokers' certificates (testing only: anyone on the path can read and change the traffic)")
	fs.StringVar(&k.SASLMechanism, "kafka-sasl-mechanism", k.SASLMechanism, "SASL authentication: "+strings.Join(kafkaSASLMechanisms, ", ")+" (empty: none)")
	fs.StringVar(&k.SASLUsername, "kafka-sasl-username", k.SASLUsername, "SASL user")
	// The default is always empty, so --help never shows a secret.
	fs.StringVar(&k.SASLPassword, "kafka-sasl-password", "", "SASL password (prefer --kafka-sasl-password-file)")
	fs.StringVar(&k.SASLPasswordFile, "kafka-sasl-password-file", k.SASLPasswordFile, "file holding the SASL password (a trailing newline is ignored)")
}

// Conn builds how every Kafka client of creditmeter connects: the brokers,
// TLS and SASL of these settings. Its errors name the setting at fault and
// never contain the password.
func (k Kafka) Conn() (ingest.Conn, error) {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &SettingError{Flag: flag, Err: fmt.Errorf(format, args...)})
	}
	conn := ingest.Conn{Brokers: k.Brokers, Explain: k.Explain}
	if k.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: k.TLSServerName, InsecureSkipVerify: k.TLSInsecureSkipVerify}
		if k.TLSCAFile != "" {
			pem, err := os.ReadFile(k.TLSCAFile)
			if err != nil {
				bad("kafka-tls-ca-file", "%v", err)
			} else {
				tc.RootCAs = x509.NewCertPool()
				if !tc.RootCAs.AppendCertsFromPEM(pem) {
					bad("kafka-tls-ca-file", "no PEM certificate in %s", k.TLSCAFile)
				}
			}
		}
		switch {
		case k.TLSCertFile != "" && k.TLSKeyFile == "":
			bad("kafka-tls-key-file", "required with --kafka-tls-cert-file")
		case k.TLSCertFile == "" && k.TLSKeyFile != "":
			bad("kafka-tls-cert-file", "required with --kafka-tls-key-file")
		case k.TLSCertFile != "":
			cert, err := tls.LoadX509KeyPair(k.TLSCertFile, k.TLSKeyFile)
			if err != nil {
				bad("kafka-tls-cert-file", "load %s with key %s: %v", k.TLSCertFile, k.TLSKeyFile, err)
			} else {
				tc.Certificates = []tls.Certificate{cert}
			}
		}
		conn.TLS = tc
	} else {
		for flag, set := range map[string]bool{
			"kafka-tls-ca-file": k.TLSCAFile != "", "kafka-tls-cert-file": k.TLSCertFile != "", "kafka-tls-key-file": k.TLSKeyFile != "",
			"kafka-tls-server-name": k.TLSServerName != "", "kafka-tls-insecure-skip-verify": k.TLSInsecureSkipVerify,
		} {
			if set {
				bad(flag, "has no effect without --kafka-tls")
			}
		}
	}
	mech, err := k.saslMechanism()
	if err != nil {
		errs = append(errs, err)
	}
	conn.SASL = mech
	if err := errors.Join(errs...); err != nil {
		return ingest.Conn{}, err
	}
	return conn, nil
}

func (k Kafka) saslMechanism() (sasl.Mechanism, error) {
	m := strings.ToLower(strings.TrimSpace(k.SASLMechanism))
	if m == "" {
		for flag, set := range map[string]bool{"kafka-sasl-username": k.SASLUsername != "", "kafka-sasl-password": k.SASLPassword != "", "kafka-sasl-password-file": k.SASLPasswordFile != ""} {
			if set {
				return nil, &SettingError{Flag: flag, Err: errors.New("has no effect without --kafka-sasl-mechanism")}
			}
		}
		return nil, nil
	}
	if k.SASLUsername == "" {
		return nil, &SettingError{Flag: "kafka-sasl-username", Err: fmt.Errorf("required with --kafka-sasl-mechanism %s", m)}
	}
	pass := k.SASLPassword
	switch {
	case k.SASLPassword != "" && k.SASLPasswordFile != "":
		return nil, &SettingError{Flag: "kafka-sasl-password-file", Err: errors.New("give the password either by --kafka-sasl-password or by this file, not both")}
	case k.SASLPasswordFile != "":
		b, err := os.ReadFile(k.SASLPasswordFile)
		if err != nil {
			return nil, &SettingError{Flag: "kafka-sasl-password-file", Err: err}
		}
		pass = strings.TrimRight(string(b), "\r\n")
		if pass == "" {
			return nil, &SettingError{Flag: "kafka-sasl-password-file", Err: fmt.Errorf("%s is empty", k.SASLPasswordFile)}
		}
	case pass == "":
		return nil, &SettingError{Flag: "kafka-sasl-password", Err: fmt.Errorf("required with --kafka-sasl-mechanism %s (or --kafka-sasl-password-file)", m)}
	}
	switch m {
	case "plain":
		return plain.Mechanism{Username: k.SASLUsername, Password: pass}, nil
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if m == "scram-sha-512" {
			algo = scram.SHA512
		}
		mech, err := scram.Mechanism(algo, k.SASLUsername, pass)
		if err != nil { // SASLprep refused the user or password; say which without the value
			return nil, &SettingError{Flag: "kafka-sasl-username", Err: errors.New("the user or password is not valid for SCRAM (SASLprep)")}
		}
		return mech, nil
	}
	return nil, &SettingError{Flag: "kafka-sasl-mechanism", Err: fmt.Errorf("want one of %s, got %q", strings.Join(kafkaSASLMechanisms, ", "), k.SASLMechanism)}
}

// passwordFlag is the setting that gave the SASL password.
func (k Kafka) passwordFlag() string {
	if k.SASLPasswordFile != "" {
		return "kafka-sasl-password-file"
	}
	return "kafka-sasl-password"
}

// Explain rewrites a failure to connect to Kafka so that it names the
// setting that is most likely wrong; other errors are returned as they are.
func (k Kafka) Explain(err error) error {
	if err == nil {
		return nil
	}
	var (
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		notTLS     tls.RecordHeaderError
		alert      tls.AlertError
		verifyFail *tls.CertificateVerificationError
		opErr      *net.OpError
	)
	on := func(flag, format string, args ...any) error {
		return &SettingError{Flag: flag, Err: fmt.Errorf(format+": %w", append(args, err)...)}
	}
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return on(k.passwordFlag(), "the broker refused user %q (%s): check the password and --kafka-sasl-username", k.SASLUsername, k.SASLMechanism)
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return on("kafka-sasl-mechanism", "the broker does not accept %q", k.SASLMechanism)
	case errors.As(err, &hostname):
		return on("kafka-tls-server-name", "the broker's certificate is not for this name")
	case errors.As(err, &unknownCA):
		return on("kafka-tls-ca-file", "the broker's certificate is not signed by a trusted CA")
	case errors.As(err, &invalid):
		return on("kafka-tls-ca-file", "the broker's certificate is not valid")
	case errors.As(err, &verifyFail):
		return on("kafka-tls-ca-file", "the broker's certificate cannot be verified")
	case errors.As(err, &notTLS) || errors.Is(err, ingest.ErrNoTLSHandshake):
		return on("kafka-tls", "the broker does not speak TLS on this port")
	case errors.As(err, &alert) || (errors.As(err, &opErr) && opErr.Op == "remote error"):
		// The broker's TLS alert ("certificate required", "bad certificate").
		return on("kafka-tls-cert-file", "the broker refused the TLS handshake (does it require a client certificate, one its CA signed?)")
	case !k.TLS && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
		return on("kafka-tls", "the broker closed the connection (does its listener require TLS, or SASL with --kafka-sasl-mechanism?)")
	case k.SASLMechanism == "" && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
		return on("kafka-sasl-mechanism", "the broker closed the connection (does its listener require SASL?)")
	}
	return err
}

func (c *Config) bindBrokerSecurity(fs *pflag.FlagSet) {
	b := &c.Broker
	fs.StringVar(&b.TLSCertFile, "tls-cert-file", b.TLSCertFile, "PEM certificate (chain) of a TLS listener, with --tls-key-file (empty: plaintext)")
	fs.StringVar(&b.TLSKeyFile, "tls-key-file", b.TLSKeyFile, "PEM private key of --tls-cert-file")
	fs.StringVar(&b.SASLMechanism, "sasl-mechanism", b.SASLMechanism, "require SASL authentication: "+strings.Join(kafkaSASLMechanisms, ", ")+" (empty: none)")
	fs.StringVar(&b.SASLUsername, "sasl-username", b.SASLUsername, "the SASL user the broker accepts")
	fs.StringVar(&b.SASLPassword, "sasl-password", "", "its password (prefer --sasl-password-file)")
	fs.StringVar(&b.SASLPasswordFile, "sasl-password-file", b.SASLPasswordFile, "file holding its password (a trailing newline is ignored)")
}

// BrokerUser is the SASL user of the development broker.
type BrokerUser struct{ Mechanism, User, Password string }

// Security is the development broker's TLS listener configuration (nil:
// plaintext) and SASL user (nil: no authentication).
func (b Broker) Security() (*tls.Config, *BrokerUser, error) {
	var tc *tls.Config
	switch {
	case b.TLSCertFile == "" && b.TLSKeyFile != "":
		return nil, nil, &SettingError{Flag: "tls-cert-file", Err: errors.New("required with --tls-key-file")}
	case b.TLSCertFile != "" && b.TLSKeyFile == "":
		return nil, nil, &SettingError{Flag: "tls-key-file", Err: errors.New("required with --tls-cert-file")}
	case b.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(b.TLSCertFile, b.TLSKeyFile)
		if err != nil {
			return nil, nil, &SettingError{Flag: "tls-cert-file", Err: err}
		}
		tc = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if b.SASLMechanism == "" {
		if b.SASLUsername != "" || b.SASLPassword != "" || b.SASLPasswordFile != "" {
			return nil, nil, &SettingError{Flag: "sasl-mechanism", Err: errors.New("required with --sasl-username and its password")}
		}
		return tc, nil, nil
	}
	// The same rules as the client's settings, under the broker's names.
	k := Kafka{SASLMechanism: b.SASLMechanism, SASLUsername: b.SASLUsername, SASLPassword: b.SASLPassword, SASLPasswordFile: b.SASLPasswordFile}
	if _, err := k.saslMechanism(); err != nil {
		var se *SettingError
		if errors.As(err, &se) {
			return nil, nil, &SettingError{Flag: strings.TrimPrefix(se.Flag, "kafka-"), Err: errors.New(strings.ReplaceAll(se.Err.Error(), "--kafka-", "--"))}
		}
		return nil, nil, err
	}
	pass := b.SASLPassword
	if b.SASLPasswordFile != "" {
		raw, err := os.ReadFile(b.SASLPasswordFile)
		if err != nil {
			return nil, nil, &SettingError{Flag: "sasl-password-file", Err: err}
		}
		pass = strings.TrimRight(string(raw), "\r\n")
	}
	return tc, &BrokerUser{Mechanism: strings.ToUpper(b.SASLMechanism), User: b.SASLUsername, Password: pass}, nil
}
