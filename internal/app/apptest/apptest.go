// Package apptest builds app.Stores on the real services for tests: the
// test's Redis key prefix and a fresh, migrated ClickHouse database, both
// removed when the test ends. (It is not in testenv because testenv is
// imported by the balance and engine packages' own tests, which the stores
// import.)
package apptest

import (
	"testing"

	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Stores are the stores with default options, without repair.
func Stores(t testing.TB) *app.Stores {
	t.Helper()
	return StoresWith(t, app.Options{})
}

// StoresWith are the stores with options o; o.Balance.Prefix is replaced
// by the test's own.
func StoresWith(t testing.TB, o app.Options) *app.Stores {
	t.Helper()
	rc, prefix := testenv.Keyspace(t)
	conn, cc := testenv.Archive(t)
	o.Balance.Prefix = prefix
	st, err := app.New(rc, conn, cc, o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
