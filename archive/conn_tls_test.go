package archive_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// The native protocol over TLS on a private clickhouse-server 18.16 with a
// generated CA: the archive migrates and answers through it, and each
// wrong TLS setting is named.
func TestClickHouseTLS(t *testing.T) {
	pki := testenv.NewPKI(t)
	p := testenv.StartClickHouseTLS(t, pki)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc := archive.ConnConfig{Addr: p.SecureAddr, Database: "tls_" + testenv.RandomID(t), User: "default", TLS: true, TLSCAFile: pki.CA}
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}
	conn, err := archive.Open(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ?", cc.Database).Scan(&n); err != nil || n < 5 {
		t.Fatalf("tables over TLS: %d, %v", n, err)
	}

	named := func(c archive.ConnConfig) string {
		_, err := archive.Open(ctx, c)
		var se *config.SettingError
		if errors.As(err, &se) {
			return se.Flag
		}
		return "none: " + strings.TrimSpace(func() string {
			if err == nil {
				return "no error"
			}
			return err.Error()
		}())
	}
	for _, tc := range []struct {
		name string
		edit func(*archive.ConnConfig)
		flag string
	}{
		{"another CA", func(c *archive.ConnConfig) { c.TLSCAFile = pki.OtherCA }, "clickhouse-tls-ca-file"},
		{"system roots", func(c *archive.ConnConfig) { c.TLSCAFile = "" }, "clickhouse-tls-ca-file"},
		{"wrong server name", func(c *archive.ConnConfig) { c.TLSServerName = "ch.example" }, "clickhouse-tls-server-name"},
		{"TLS to the plain port", func(c *archive.ConnConfig) { c.Addr = p.Addr }, "clickhouse-tls"},
		{"plain to the TLS port", func(c *archive.ConnConfig) { c.TLS, c.TLSCAFile = false, "" }, "clickhouse-tls"},
	} {
		c := cc
		c.Database = ""
		tc.edit(&c)
		if got := named(c); got != tc.flag {
			t.Errorf("%s: error names %s, want --%s", tc.name, got, tc.flag)
		}
	}
	c := cc
	c.TLSServerName = "redis.test" // in the test certificate
	if got := named(c); got != "none: no error" {
		t.Errorf("server name in the certificate: %s", got)
	}
}
