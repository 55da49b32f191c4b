// Package archive is the ClickHouse archive of rated usage and the credit
// ledger.
package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ConnConfig says where ClickHouse is.
type ConnConfig struct {
	Addr     string
	Database string // empty: the server's default database
	User     string
	Password string
}

// Open connects over the native protocol (ClickHouse 18.16 answers only that
// one reliably) and pings the server.
func Open(ctx context.Context, c ConnConfig) (driver.Conn, error) {
	conn, err := Connect(c)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
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
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{c.Addr},
		Protocol:    clickhouse.Native,
		Auth:        clickhouse.Auth{Database: c.Database, Username: c.User, Password: c.Password},
		DialTimeout: 5 * time.Second,
		ReadTimeout: 60 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
}
