package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad Kafka TLS and SASL settings are refused at start, naming the setting
// and never echoing a password.
func TestKafkaSecuritySettings(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	empty := filepath.Join(dir, "empty")
	notPEM := filepath.Join(dir, "not.pem")
	for p, v := range map[string]string{pw: "Pa55-from-file\n", empty: "\n", notPEM: "hello"} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sasl := []string{"--kafka-sasl-mechanism", "scram-sha-256", "--kafka-sasl-username", "u"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"unknown mechanism", []string{"--kafka-sasl-mechanism", "gssapi", "--kafka-sasl-username", "u", "--kafka-sasl-password", "x"}, nil, []string{"--kafka-sasl-mechanism", "CREDITMETER_KAFKA_SASL_MECHANISM", `"gssapi"`}},
		{"no user", []string{"--kafka-sasl-mechanism", "plain"}, nil, []string{"--kafka-sasl-username", "required"}},
		{"no password", sasl, nil, []string{"--kafka-sasl-password", "required"}},
		{"both passwords", append(sasl, "--kafka-sasl-password-file", pw), map[string]string{"CREDITMETER_KAFKA_SASL_PASSWORD": "Env-Pa55"}, []string{"--kafka-sasl-password-file", "not both"}},
		{"missing password file", append(sasl, "--kafka-sasl-password-file", filepath.Join(dir, "nope")), nil, []string{"--kafka-sasl-password-file", "no such file"}},
		{"empty password file", append(sasl, "--kafka-sasl-password-file", empty), nil, []string{"--kafka-sasl-password-file", "empty"}},
		{"user without mechanism", []string{"--kafka-sasl-username", "u"}, nil, []string{"--kafka-sasl-username", "without --kafka-sasl-mechanism"}},
		{"CA without TLS", []string{"--kafka-tls-ca-file", pw}, nil, []string{"--kafka-tls-ca-file", "without --kafka-tls"}},
		{"CA not PEM", []string{"--kafka-tls", "--kafka-tls-ca-file", notPEM}, nil, []string{"--kafka-tls-ca-file", "no PEM certificate"}},
		{"cert without key", []string{"--kafka-tls", "--kafka-tls-cert-file", notPEM}, nil, []string{"--kafka-tls-key-file", "required"}},
		{"bad client cert", []string{"--kafka-tls", "--kafka-tls-cert-file", notPEM, "--kafka-tls-key-file", notPEM}, nil, []string{"--kafka-tls-cert-file"}},
		{"broker key without cert", []string{"--tls-key-file", notPEM}, nil, []string{"--tls-cert-file", "CREDITMETER_BROKER_TLS_CERT_FILE"}},
		{"broker user without password", []string{"--sasl-mechanism", "plain", "--sasl-username", "u"}, nil, []string{"--sasl-password", "CREDITMETER_BROKER_SASL_PASSWORD", "required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.args, tc.env)
			if err == nil {
				t.Fatal("want an error, got none")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, secret := range []string{"Pa55-from-file", "Env-Pa55"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows the password: %v", err)
				}
			}
		})
	}

	c, err := parse(t, append(sasl, "--kafka-tls", "--kafka-sasl-password-file", pw), nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.Kafka.Conn()
	if err != nil {
		t.Fatal(err)
	}
	if conn.TLS == nil || conn.TLS.InsecureSkipVerify || conn.SASL == nil || conn.SASL.Name() != "SCRAM-SHA-256" {
		t.Errorf("conn: TLS %+v, SASL %v; want verified TLS and SCRAM-SHA-256", conn.TLS, conn.SASL)
	}
	if c, err = parse(t, []string{"--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u", "--kafka-sasl-password", "p"}, nil); err != nil {
		t.Fatal(err)
	}
	if conn, err = c.Kafka.Conn(); err != nil || conn.TLS != nil || conn.SASL.Name() != "PLAIN" {
		t.Errorf("plain without TLS: %v %+v", err, conn)
	}
}
