package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClickHouseProcess is a private clickhouse-server of one test (Debian's
// binary, its own ports and directory, the system's users.xml), stopped
// when the test ends.
type ClickHouseProcess struct {
	Addr       string // native protocol
	SecureAddr string // native protocol over TLS (tcp_port_secure); empty without TLS
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartClickHouseTLS starts a private clickhouse-server that also serves the
// native protocol over TLS with pki's server certificate.
func StartClickHouseTLS(t testing.TB, pki PKI) *ClickHouseProcess {
	t.Helper()
	tcp, secure := freePort(t), freePort(t)
	extra := fmt.Sprintf(` <tcp_port_secure>%d</tcp_port_secure>
 <openSSL><server><certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile>
  <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile><disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>
`, secure, pki.ServerCert, pki.ServerKey)
	p := &ClickHouseProcess{Addr: "127.0.0.1:" + strconv.Itoa(tcp), SecureAddr: "127.0.0.1:" + strconv.Itoa(secure)}
	startClickHouse(t, tcp, extra, "", p.SecureAddr)
	return p
}

// StartClickHouseCluster starts shards private clickhouse-servers, each
// configured with a cluster of that name whose shard i (one replica, no
// ZooKeeper) is server i.
func StartClickHouseCluster(t testing.TB, name string, shards int) []*ClickHouseProcess {
	t.Helper()
	ports := make([]int, shards)
	var remote strings.Builder
	fmt.Fprintf(&remote, " <remote_servers><%s>\n", name)
	for i := range ports {
		ports[i] = freePort(t)
		fmt.Fprintf(&remote, "  <shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>\n", ports[i])
	}
	fmt.Fprintf(&remote, " </%s></remote_servers>\n", name)
	out := make([]*ClickHouseProcess, shards)
	for i, p := range ports {
		out[i] = &ClickHouseProcess{Addr: "127.0.0.1:" + strconv.Itoa(p)}
		startClickHouse(t, p, remote.String(), "", out[i].Addr)
	}
	return out
}

// startClickHouse runs clickhouse-server on tcp with extra config lines and
// users (a users.xml; "" for the system's) and waits until waitAddr accepts
// connections.
func startClickHouse(t testing.TB, tcp int, extra, users, waitAddr string) {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		Unavailable(t, "clickhouse-server binary", "PATH", err)
	}
	dir := t.TempDir()
	if users == "" {
		users = "/etc/clickhouse-server/users.xml"
	}
	http, inter := freePort(t), freePort(t)
	conf := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
 <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/err.log</errorlog><size>10M</size><count>1</count></logger>
 <listen_host>127.0.0.1</listen_host>
 <tcp_port>%[2]d</tcp_port>
 <http_port>%[3]d</http_port>
 <interserver_http_port>%[4]d</interserver_http_port>
%[5]s <max_connections>64</max_connections>
 <max_concurrent_queries>20</max_concurrent_queries>
 <uncompressed_cache_size>134217728</uncompressed_cache_size>
 <mark_cache_size>53687091</mark_cache_size>
 <path>%[1]s/data/</path>
 <tmp_path>%[1]s/tmp/</tmp_path>
 <user_files_path>%[1]s/user_files/</user_files_path>
 <users_config>%[6]s</users_config>
 <default_profile>default</default_profile>
 <default_database>default</default_database>
 <mlock_executable>false</mlock_executable>
</yandex>
`, dir, tcp, http, inter, extra, users)
	path := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() { // what the server said, before its directory goes
			if log, _ := os.ReadFile(filepath.Join(dir, "err.log")); len(log) > 0 {
				t.Logf("clickhouse-server on port %d, err.log:\n%s", tcp, tail(log, 4000))
			}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", waitAddr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			t.Fatalf("private clickhouse-server did not listen on %s: %v\n%s", waitAddr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
