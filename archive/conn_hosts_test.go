package archive_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// With several --clickhouse-addr hosts, a host that does not answer is
// skipped for the next one (failover), for the first connection and after.
func TestOpenFailsOverToNextHost(t *testing.T) {
	_, cc := testenv.ClickHouse(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	cc.Addr = dead + "," + cc.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := archive.Open(ctx, cc)
	if err != nil {
		t.Fatalf("open %s: %v", cc.Addr, err)
	}
	defer conn.Close()
	var one uint8
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query through %s: %d, %v", cc.Addr, one, err)
	}
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatalf("migrate through %s: %v", cc.Addr, err)
	}

	// Every host down: the error names them.
	cc.Addr = dead
	if _, err := archive.Open(ctx, cc); err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("open of a dead host: %v, want an error naming %s", err, dead)
	}
}

// The real server's version is read at start and accepted.
func TestOpenChecksServerVersion(t *testing.T) {
	conn, _ := testenv.ClickHouse(t)
	if err := archive.CheckServerVersion(conn); err != nil {
		t.Fatal(err)
	}
	v, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Version.Major == 0 {
		t.Fatalf("server version %+v not read", v)
	}
	t.Logf("ClickHouse %s %d.%d.%d", v.DisplayName, v.Version.Major, v.Version.Minor, v.Version.Patch)
}

// A wrong password is named, not reported as an unreachable server.
func TestOpenNamesWrongPassword(t *testing.T) {
	_, cc := testenv.ClickHouse(t)
	cc.Password = "not-the-password"
	_, err := archive.Open(context.Background(), cc)
	var se *config.SettingError
	if !errors.As(err, &se) || se.Flag != "clickhouse-password" {
		t.Fatalf("open with a wrong password: %v, want an error naming --clickhouse-password", err)
	}
}

// A user the server does not know is named as --clickhouse-user (18.16
// tells UNKNOWN_USER from a wrong password).
func TestOpenNamesUnknownUser(t *testing.T) {
	_, cc := testenv.ClickHouse(t)
	cc.User = "nosuch_" + testenv.RandomID(t)[:6]
	_, err := archive.Open(context.Background(), cc)
	var se *config.SettingError
	if !errors.As(err, &se) || se.Flag != "clickhouse-user" || !strings.Contains(err.Error(), cc.User) {
		t.Fatalf("open as an unknown user: %v, want an error naming --clickhouse-user and the user", err)
	}
}
