package main

import (
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// A ClickHouse that answers but lacks the configured database is not simply
// "reachable": doctor says the database is missing.
func TestDoctorChecksTheClickHouseDatabase(t *testing.T) {
	_, cc := testenv.ClickHouse(t)
	missing := cc.Database + "_missing"
	out, err := run(t, nil, "doctor", "--only", "clickhouse", "--clickhouse-addr", cc.Addr, "--clickhouse-database", missing)
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	if !strings.Contains(out, `database "`+missing+`" does not exist`) {
		t.Errorf("doctor does not say the database is missing:\n%s", out)
	}
	out, err = run(t, nil, "doctor", "--only", "clickhouse", "--clickhouse-addr", cc.Addr, "--clickhouse-database", cc.Database)
	if err != nil || strings.Contains(out, "does not exist") || !strings.Contains(out, `database "`+cc.Database+`"`) {
		t.Errorf("doctor on the existing database %s: %v\n%s", cc.Database, err, out)
	}
}
