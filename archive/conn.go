// Package archive is the ClickHouse archive of rated usage and the credit
// ledger.
package archive

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/creditmeter/creditmeter/internal/config"
)

// ConnConfig says where ClickHouse is.
type ConnConfig struct {
	// Addr is host:port, or several comma-separated: tried in order, the
	// next one when a server does not answer (failover).
	Addr     string
	Database string // empty: the server's default database
	User     string
	Password string
	// TLS on the native protocol (the server's tcp_port_secure, 9440).
	TLS                   bool
	TLSCAFile             string // PEM; empty: the system roots
	TLSServerName         string // empty: each address's host
	TLSInsecureSkipVerify bool
	// Cluster names a cluster of the servers' remote_servers: the schema is
	// created on every host of it, sharded by subscription (see README.md).
	Cluster string
}

// ConnConfigOf is the connection of the --clickhouse-* settings.
func ConnConfigOf(c config.ClickHouse) ConnConfig {
	return ConnConfig{Addr: c.Addr, Database: c.Database, User: c.User, Password: c.Password,
		TLS: c.TLS, TLSCAFile: c.TLSCAFile, TLSServerName: c.TLSServerName, TLSInsecureSkipVerify: c.TLSInsecureSkipVerify, Cluster: c.Cluster}
}

// MinServerVersion is the oldest ClickHouse the schema and queries are
// tested on (Debian's 18.16).
var MinServerVersion = [2]uint64{18, 16}

// Open connects over the native protocol (ClickHouse 18.16 answers only that
// one reliably), pings the server and refuses a version older than
// MinServerVersion.
func Open(ctx context.Context, c ConnConfig) (driver.Conn, error) {
	conn, err := Connect(c)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, explain(c, err))
	}
	if err := CheckServerVersion(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
}

// ErrUnsupportedServer is a ClickHouse older than MinServerVersion: retrying
// does not help.
var ErrUnsupportedServer = errors.New("unsupported ClickHouse version")

// CheckServerVersion refuses a server older than MinServerVersion.
func CheckServerVersion(conn driver.Conn) error {
	v, err := conn.ServerVersion()
	if err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	return checkVersion(v.Version.Major, v.Version.Minor, v.Version.Patch)
}

func checkVersion(major, minor, patch uint64) error {
	if major < MinServerVersion[0] || major == MinServerVersion[0] && minor < MinServerVersion[1] {
		return fmt.Errorf("%w: the server is %d.%d.%d, creditmeter needs %d.%d or later (--clickhouse-addr)",
			ErrUnsupportedServer, major, minor, patch, MinServerVersion[0], MinServerVersion[1])
	}
	return nil
}

// EnsureDatabase creates the database if missing, connecting without one.
func EnsureDatabase(ctx context.Context, c ConnConfig) error {
	db := c.Database
	c.Database = ""
	conn, err := Open(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return fmt.Errorf("clickhouse %s: create database %s: %w", c.Addr, db, err)
	}
	return nil
}

// Connect is Open without the ping: it never fails for an unreachable server
// (the first query does), so a service can start while ClickHouse is down.
func Connect(c ConnConfig) (driver.Conn, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	var settings clickhouse.Settings
	if c.Cluster != "" {
		// An insert through a Distributed table returns once every shard
		// has its rows (the default queues them on local disk and sends
		// later: not durable where acknowledged, not readable at once).
		settings = clickhouse.Settings{"insert_distributed_sync": 1}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Settings:         settings,
		Addr:             c.Addrs(),
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
		Protocol:         clickhouse.Native,
		TLS:              tc,
		Auth:             clickhouse.Auth{Database: c.Database, Username: c.User, Password: c.Password},
		DialTimeout:      5 * time.Second,
		ReadTimeout:      60 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
}

// Addrs is the list of Addr.
func (c ConnConfig) Addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (c ConnConfig) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName, InsecureSkipVerify: c.TLSInsecureSkipVerify}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, &config.SettingError{Flag: "clickhouse-tls-ca-file", Err: err}
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &config.SettingError{Flag: "clickhouse-tls-ca-file", Err: fmt.Errorf("no PEM certificate in %s", c.TLSCAFile)}
		}
	}
	return tc, nil
}

// explain names the setting behind a failed TLS handshake.
func explain(c ConnConfig, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var notTLS tls.RecordHeaderError
	var ex *clickhouse.Exception
	switch {
	// UNKNOWN_USER (18.16; later versions answer 516 for both, not to tell
	// which users exist), WRONG_PASSWORD (18.16), AUTHENTICATION_FAILED.
	case errors.As(err, &ex) && ex.Code == 192:
		return &config.SettingError{Flag: "clickhouse-user", Err: fmt.Errorf("ClickHouse has no user %q: %w", c.User, err)}
	case errors.As(err, &ex) && (ex.Code == 193 || ex.Code == 516):
		return &config.SettingError{Flag: "clickhouse-password", Err: fmt.Errorf("ClickHouse refused user %q with this password (--clickhouse-user, --clickhouse-password): %w", c.User, err)}
	case errors.As(err, &unknownCA):
		return &config.SettingError{Flag: "clickhouse-tls-ca-file", Err: fmt.Errorf("the server's certificate is not signed by a trusted CA: %w", err)}
	case errors.As(err, &hostname):
		return &config.SettingError{Flag: "clickhouse-tls-server-name", Err: fmt.Errorf("the server's certificate does not name the host: %w", err)}
	case errors.As(err, &notTLS):
		return &config.SettingError{Flag: "clickhouse-tls", Err: fmt.Errorf("the server does not speak TLS on this port (the secure native port is usually 9440): %w", err)}
	case !c.TLS && strings.Contains(err.Error(), "handshake") &&
		(errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "unexpected packet")):
		return &config.SettingError{Flag: "clickhouse-tls", Err: fmt.Errorf("no answer in plain text: is this a TLS port? %w", err)}
	}
	return err
}
