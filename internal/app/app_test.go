package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// serve's options: the configured prefix and windows, and the accounts
// repair Redis from the archive.
func TestOptionsOfServe(t *testing.T) {
	cfg := testenv.Config(t)
	cfg.Engine.KeyPrefix, cfg.Engine.DedupeWindow, cfg.Engine.GraceWindow = "cm:", 2*time.Hour, 10*time.Minute
	o := app.OptionsOf(cfg.Engine)
	if o.Balance.Prefix != "cm:" || o.Balance.DedupeWindow != 2*time.Hour || o.Balance.GraceWindow != 10*time.Minute || !o.Repair {
		t.Fatalf("options %+v", o)
	}
}

// The stores share one keyspace and one archive: a top-up through Accounts
// is in the balance store and, as a ledger row, in ClickHouse.
func TestStoresShareKeyspaceAndArchive(t *testing.T) {
	ctx := context.Background()
	st := apptest.Stores(t)
	if st.Accounts.Repair != nil {
		t.Fatal("accounts repair without Options.Repair")
	}
	if st.Accounts.Store != st.Balances {
		t.Fatal("accounts on another balance store")
	}
	if _, err := st.Balances.OpenAccount(ctx, balance.AccountSpec{Subscription: "s", Customer: "c", Policy: credit.Unfunded, Currency: "USD", CreditValue: decimal.NewFromInt(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accounts.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: "s", Amount: credit.Credits(5)}, "c"); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := st.Conn.QueryRow(ctx, "SELECT count() FROM credit_ledger FINAL WHERE subscription_id = 's'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("archived rows %d, %v", n, err)
	}
	if keys, err := testenv.Keys(ctx, st.RC, st.Prefix+"*"); err != nil || len(keys) == 0 {
		t.Fatalf("no keys under the stores' prefix: %v", err)
	}
	if rs := apptest.StoresWith(t, app.Options{Repair: true}); rs.Accounts.Repair != rs.Repairer {
		t.Fatal("Options.Repair does not give the accounts the repairer")
	}
}

// Connect builds the stores from a configuration; Close closes the clients.
func TestConnectFromConfig(t *testing.T) {
	cfg := testenv.Config(t)
	cfg.Engine.KeyPrefix = testenv.Prefix(t)
	st, err := app.Connect(context.Background(), cfg, config.RedisTuning{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RC.Ping(context.Background()).Err(); err != nil {
		testenv.Unavailable(t, "redis", cfg.Redis.Addr, err)
	}
	if st.Prefix != cfg.Engine.KeyPrefix || st.Accounts.Repair == nil {
		t.Fatalf("stores %+v", st)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.RC.Ping(context.Background()).Err(); err == nil {
		t.Fatal("Redis client still open after Close")
	}
}
