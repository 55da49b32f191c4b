package doctor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/doctor"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// With --clickhouse-cluster, doctor checks every host of the cluster and
// says how many answer; a cluster the server does not know names the
// setting.
func TestDoctorChecksClickHouseClusterTopology(t *testing.T) {
	procs := testenv.StartClickHouseCluster(t, "cm", 2)
	cfg := testenv.Config(t)
	cfg.ClickHouse.Addr = procs[0].Addr
	cfg.ClickHouse.Cluster = "cm"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := doctor.Check(ctx, cfg, "clickhouse")[0]
	if r.Err != nil || !strings.Contains(r.Note, `cluster "cm": 2 hosts answer`) ||
		!strings.Contains(r.Note, procs[0].Addr) || !strings.Contains(r.Note, procs[1].Addr) {
		t.Fatalf("doctor on a 2-host cluster: %q, %v", r.Note, r.Err)
	}
	cfg.ClickHouse.Cluster = "nosuch"
	r = doctor.Check(ctx, cfg, "clickhouse")[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "--clickhouse-cluster") {
		t.Fatalf("doctor with an unknown cluster: %q, %v; want an error naming --clickhouse-cluster", r.Note, r.Err)
	}
}
