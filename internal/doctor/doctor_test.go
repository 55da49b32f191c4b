package doctor_test

import (
	"context"
	"net"
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

// With several --clickhouse-addr hosts (failover) doctor checks each one's
// handshake, not only the first that answers: a host that does not answer
// is named in the note (the others carry on), and a host whose TLS does not
// match the settings fails naming the setting and the host.
func TestDoctorChecksEachClickHouseHost(t *testing.T) {
	pki := testenv.NewPKI(t)
	p := testenv.StartClickHouseTLS(t, pki)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	cfg := testenv.Config(t)
	cfg.ClickHouse.Addr = p.Addr + "," + dead
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := doctor.Check(ctx, cfg, "clickhouse")[0]
	if r.Err != nil || !strings.Contains(r.Note, dead) || !strings.Contains(r.Note, "1 of 2 hosts answer") {
		t.Errorf("doctor with a dead failover host: note %q, err %v; want the dead host %s named", r.Note, r.Err, dead)
	}
	// TLS on: the secure port answers, the plain port of the same server does not speak TLS.
	cfg.ClickHouse.Addr = p.SecureAddr + "," + p.Addr
	cfg.ClickHouse.TLS, cfg.ClickHouse.TLSCAFile = true, pki.CA
	r = doctor.Check(ctx, cfg, "clickhouse")[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "--clickhouse-tls") || !strings.Contains(r.Err.Error(), p.Addr) {
		t.Errorf("doctor with a second host that does not speak TLS: note %q, err %v; want an error naming --clickhouse-tls and %s", r.Note, r.Err, p.Addr)
	}
	cfg.ClickHouse.Addr = p.SecureAddr
	r = doctor.Check(ctx, cfg, "clickhouse")[0]
	if r.Err != nil {
		t.Errorf("doctor over TLS: %v", r.Err)
	}
}
