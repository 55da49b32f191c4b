package config

import (
	"fmt"
	"regexp"

	"github.com/spf13/pflag"
)

// ClickHouseTLS is TLS on ClickHouse's native protocol (its secure port,
// usually 9440; ClickHouse Cloud accepts only that).
type ClickHouseTLS struct {
	TLS                   bool
	TLSCAFile             string
	TLSServerName         string
	TLSInsecureSkipVerify bool
}

func (t *ClickHouseTLS) bind(fs *pflag.FlagSet) {
	fs.BoolVar(&t.TLS, "clickhouse-tls", t.TLS, "connect to ClickHouse with TLS (its secure native port, usually 9440)")
	fs.StringVar(&t.TLSCAFile, "clickhouse-tls-ca-file", t.TLSCAFile, "PEM file of the CA that signed ClickHouse's certificate (default: the system's roots)")
	fs.StringVar(&t.TLSServerName, "clickhouse-tls-server-name", t.TLSServerName, "name the ClickHouse certificate must carry (default: each address's host)")
	fs.BoolVar(&t.TLSInsecureSkipVerify, "clickhouse-tls-insecure-skip-verify", t.TLSInsecureSkipVerify, "do not verify ClickHouse's certificate (testing only: anyone on the path can read and change the archive)")
}

// ClickHouseCluster is the cluster mode of the archive (see archive/README.md).
type ClickHouseCluster struct {
	Cluster string
}

func (c *ClickHouseCluster) bind(fs *pflag.FlagSet) {
	fs.StringVar(&c.Cluster, "clickhouse-cluster", c.Cluster, "cluster of the ClickHouse servers' remote_servers: tables on every host of it, sharded by subscription, read through Distributed tables (default: one server)")
}

// clusterName is what a remote_servers entry (an XML element) may be called.
var clusterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// validateConn checks --clickhouse-addr and the TLS settings.
func (c ClickHouse) validateConn() []error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &SettingError{Flag: flag, Err: fmt.Errorf(format, args...)})
	}
	addrs := splitList(c.Addr)
	if len(addrs) == 0 {
		bad("clickhouse-addr", "at least one host:port is required")
	}
	for _, a := range addrs {
		if err := checkHostPort(a); err != nil {
			bad("clickhouse-addr", "%v", err)
		}
	}
	if !c.TLS {
		for flag, set := range map[string]bool{"clickhouse-tls-ca-file": c.TLSCAFile != "", "clickhouse-tls-server-name": c.TLSServerName != "",
			"clickhouse-tls-insecure-skip-verify": c.TLSInsecureSkipVerify} {
			if set {
				bad(flag, "needs --clickhouse-tls")
			}
		}
	}
	if c.Cluster != "" && !clusterName.MatchString(c.Cluster) {
		bad("clickhouse-cluster", "must be a remote_servers name (letters, digits, _ . -), got %q", c.Cluster)
	}
	if c.TLSInsecureSkipVerify && c.TLSCAFile != "" {
		bad("clickhouse-tls-insecure-skip-verify", "contradicts --clickhouse-tls-ca-file (a CA is only used to verify)")
	}
	return errs
}
