package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ClickHouseProcess is a private clickhouse-server of one test (Debian's
// binary, its own ports and directory, the system's users.xml), stopped
// when the test ends.
type ClickHouseProcess struct {
	Addr       string // native protocol
	SecureAddr string // native protocol over TLS (tcp_port_secure)
}

// StartClickHouseTLS starts a private clickhouse-server that also serves the
// native protocol over TLS with pki's server certificate.
func StartClickHouseTLS(t testing.TB, pki PKI) *ClickHouseProcess {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		Unavailable(t, "clickhouse-server binary", "PATH", err)
	}
	dir := t.TempDir()
	port := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	tcp, secure, http, inter := port(), port(), port(), port()
	conf := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
 <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/err.log</errorlog><size>10M</size><count>1</count></logger>
 <listen_host>127.0.0.1</listen_host>
 <tcp_port>%[2]d</tcp_port>
 <tcp_port_secure>%[3]d</tcp_port_secure>
 <http_port>%[4]d</http_port>
 <interserver_http_port>%[5]d</interserver_http_port>
 <openSSL><server><certificateFile>%[6]s</certificateFile><privateKeyFile>%[7]s</privateKeyFile>
  <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile><disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>
 <max_connections>64</max_connections>
 <max_concurrent_queries>20</max_concurrent_queries>
 <uncompressed_cache_size>134217728</uncompressed_cache_size>
 <mark_cache_size>53687091</mark_cache_size>
 <path>%[1]s/data/</path>
 <tmp_path>%[1]s/tmp/</tmp_path>
 <user_files_path>%[1]s/user_files/</user_files_path>
 <users_config>/etc/clickhouse-server/users.xml</users_config>
 <default_profile>default</default_profile>
 <default_database>default</default_database>
 <mlock_executable>false</mlock_executable>
</yandex>
`, dir, tcp, secure, http, inter, pki.ServerCert, pki.ServerKey)
	path := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &ClickHouseProcess{Addr: "127.0.0.1:" + strconv.Itoa(tcp), SecureAddr: "127.0.0.1:" + strconv.Itoa(secure)}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.SecureAddr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			t.Fatalf("private clickhouse-server did not listen on %s: %v\n%s", p.SecureAddr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
