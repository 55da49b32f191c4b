package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSSettingsErrorsNameTheSetting(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		flag string
		msg  string
	}{
		{[]string{"--clickhouse-addr", "a:9000,b"}, "clickhouse-addr", `want host:port, got "b"`},
		{[]string{"--clickhouse-addr", " , "}, "clickhouse-addr", "at least one"},
		{[]string{"--clickhouse-tls-ca-file", notPEM}, "clickhouse-tls-ca-file", "needs --clickhouse-tls"},
		{[]string{"--clickhouse-tls", "--clickhouse-tls-ca-file", "x", "--clickhouse-tls-insecure-skip-verify"}, "clickhouse-tls-insecure-skip-verify", "contradicts"},
		{[]string{"--redis-tls-ca-file", notPEM}, "redis-tls-ca-file", "rediss://"},
		{[]string{"--redis-addr", "rediss://x:1", "--redis-tls-ca-file", notPEM}, "redis-tls-ca-file", "no PEM certificate"},
		{[]string{"--redis-addr", "rediss://x:1", "--redis-tls-ca-file", notPEM + ".missing"}, "redis-tls-ca-file", "no such file"},
		{[]string{"--redis-addr", "rediss://x:1", "--redis-tls-cert-file", notPEM}, "redis-tls-key-file", "required with --redis-tls-cert-file"},
		{[]string{"--redis-addr", "rediss://x:1", "--redis-tls-cert-file", notPEM, "--redis-tls-key-file", notPEM}, "redis-tls-cert-file", "PEM"},
	} {
		_, err := parse(t, tc.args, nil)
		var se *SettingError
		if !errors.As(err, &se) || se.Flag != tc.flag || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: want error on --%s containing %q, got %v", tc.args, tc.flag, tc.msg, err)
		}
	}
	c, err := parse(t, []string{"--clickhouse-addr", "ch1:9440, ch2:9440", "--clickhouse-tls", "--redis-addr", "rediss://r:6380", "--redis-tls-server-name", "cache.internal"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Redis.Resolve()
	if err != nil || r.tlsConf == nil || r.tlsConf.ServerName != "cache.internal" {
		t.Fatalf("resolved %+v, %v: want TLS with server name cache.internal", r, err)
	}
}
