// Package app builds creditmeter's stores from its configuration: one wiring
// for `serve`, the benchmark world (bench) and the end-to-end test world
// (internal/e2e), so they run the same catalog store, balance store, archive
// writer and accounts on one Redis client and one ClickHouse connection.
package app

import (
	"context"
	"errors"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/reconcile"
)

// Options are the stores' settings.
type Options struct {
	// Balance are the balance store's options; its Prefix is the catalog's
	// too, its DedupeWindow the repairer's.
	Balance balance.Options
	// Repair makes Accounts repair a subscription whose ledger entries the
	// archive refuses for reusing its sequence numbers (serve).
	Repair bool
}

// OptionsOf are serve's options: cfg's prefix and windows, with repair.
func OptionsOf(cfg config.Engine) Options {
	return Options{Balance: balance.Options{Prefix: cfg.KeyPrefix, DedupeWindow: cfg.DedupeWindow, GraceWindow: cfg.GraceWindow}, Repair: true}
}

// Stores are the stores the engine, the API and the jobs share.
type Stores struct {
	RC       redis.UniversalClient
	Prefix   string
	Conn     driver.Conn
	CC       archive.ConnConfig
	Catalog  *catalogstore.Store
	Balances *balance.Store
	Writer   *archive.Writer
	// Repairer repairs Redis from the archive after lost writes (the
	// engine's and, with Options.Repair, the Accounts').
	Repairer *reconcile.Repairer
	Accounts *accounts.Accounts

	close func() error
}

// New builds the stores on a Redis client and a ClickHouse connection the
// caller opened and closes (tests: testenv's). It does not migrate.
func New(rc redis.UniversalClient, conn driver.Conn, cc archive.ConnConfig, o Options) (*Stores, error) {
	s := &Stores{RC: rc, Prefix: o.Balance.Prefix, Conn: conn, CC: cc, close: func() error { return nil }}
	var err error
	if s.Catalog, err = catalogstore.New(rc, s.Prefix); err != nil {
		return nil, err
	}
	if s.Balances, err = balance.New(rc, o.Balance); err != nil {
		return nil, err
	}
	s.Writer = archive.NewWriter(conn)
	s.Repairer = &reconcile.Repairer{Store: s.Balances, Conn: conn, DedupeWindow: o.Balance.DedupeWindow}
	s.Accounts = &accounts.Accounts{Store: s.Balances, Archive: s.Writer}
	if o.Repair {
		s.Accounts.Repair = s.Repairer
	}
	return s, nil
}

// Connect opens the Redis client and the ClickHouse connection cfg names and
// builds the stores on them (serve's options). Neither service need be up: a
// wrong TLS, password or ACL setting of Redis fails here, Redis or
// ClickHouse being down does not (callers wait for them). Close closes both.
func Connect(ctx context.Context, cfg config.Config, tuning config.RedisTuning) (*Stores, error) {
	rc, rconn, err := config.NewRedisClient(cfg.Redis, tuning)
	if err != nil {
		return nil, err
	}
	actx, acancel := context.WithTimeout(ctx, 2*time.Second)
	err = config.CheckRedisACL(actx, rc, rconn, cfg.Engine.KeyPrefix)
	acancel()
	if se := (*config.SettingError)(nil); errors.As(err, &se) {
		rc.Close()
		return nil, err
	}
	cc := archive.ConnConfigOf(cfg.ClickHouse)
	conn, err := archive.Connect(cc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	s, err := New(rc, conn, cc, OptionsOf(cfg.Engine))
	if err != nil {
		conn.Close()
		rc.Close()
		return nil, err
	}
	s.close = func() error { return errors.Join(conn.Close(), rc.Close()) }
	return s, nil
}

// Close closes what Connect opened (nothing for New).
func (s *Stores) Close() error { return s.close() }
