package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/archive"
)

// zookeeperJar is Debian's zookeeper package's server (deploy/local/install.sh).
const zookeeperJar = "/usr/share/java/zookeeper.jar"

// StartZooKeeper starts a private standalone ZooKeeper on loopback (its own
// port and data directory, not the package's system service) and returns
// its address; it is stopped when the test ends.
func StartZooKeeper(t testing.TB) string {
	t.Helper()
	java, err := exec.LookPath("java")
	if err == nil {
		_, err = os.Stat(zookeeperJar)
	}
	if err != nil {
		Unavailable(t, "ZooKeeper (Debian's zookeeper package)", zookeeperJar, err)
	}
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s/data\nclientPort=%d\nclientPortAddress=127.0.0.1\n"+
		"admin.enableServer=false\n4lw.commands.whitelist=srvr\n", dir, port)
	path := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "zookeeper.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(java, "-Xmx128m", "-XX:+UseSerialGC", "-cp", zookeeperJar,
		"org.apache.zookeeper.server.ZooKeeperServerMain", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for !zookeeperOK(addr) {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("private ZooKeeper did not answer on %s:\n%s", addr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}

// zookeeperOK asks ZooKeeper "srvr": it names its mode once it serves
// sessions ("imok" to ruok comes earlier, and clickhouse-server 18.16
// crashes on a ZooKeeper that drops its handshake).
func zookeeperOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	out, _ := io.ReadAll(c)
	return strings.Contains(string(out), "Mode: standalone")
}

// replicatedUsers: user default's profile sends a shard's reads and writes
// to its first live replica (load_balancing in_order), as cluster mode with
// replicas requires; user random's profile does not.
const replicatedUsers = `<?xml version="1.0"?>
<yandex>
 <profiles>
  <default><load_balancing>in_order</load_balancing></default>
  <random><load_balancing>random</load_balancing></random>
 </profiles>
 <users>
  <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
  <random><password></password><networks><ip>127.0.0.1</ip></networks><profile>random</profile><quota>default</quota></random>
 </users>
 <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`

// StartClickHouseReplicatedCluster starts private clickhouse-servers for a
// cluster of that name with replicas[i] replicas in shard i, all using the
// ZooKeeper at zk: macros shard (01, 02, …) and replica (r1, r2, …), the
// distributed DDL queue (ON CLUSTER), internal_replication true, and the
// users of replicatedUsers. It returns
// the servers by shard, then replica.
func StartClickHouseReplicatedCluster(t testing.TB, name, zk string, replicas ...int) [][]*ClickHouseProcess {
	t.Helper()
	zkHost, zkPort, err := net.SplitHostPort(zk)
	if err != nil {
		t.Fatal(err)
	}
	ports := make([][]int, len(replicas))
	var remote strings.Builder
	fmt.Fprintf(&remote, " <remote_servers><%s>\n", name)
	for s, n := range replicas {
		remote.WriteString("  <shard><internal_replication>true</internal_replication>\n")
		for r := 0; r < n; r++ {
			p := freePort(t)
			ports[s] = append(ports[s], p)
			fmt.Fprintf(&remote, "   <replica><host>127.0.0.1</host><port>%d</port></replica>\n", p)
		}
		remote.WriteString("  </shard>\n")
	}
	fmt.Fprintf(&remote, " </%s></remote_servers>\n", name)
	fmt.Fprintf(&remote, " <zookeeper><node><host>%s</host><port>%s</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>\n", zkHost, zkPort)
	remote.WriteString(" <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n <interserver_http_host>127.0.0.1</interserver_http_host>\n")
	users := filepath.Join(t.TempDir(), "users.xml")
	if err := os.WriteFile(users, []byte(replicatedUsers), 0o600); err != nil {
		t.Fatal(err)
	}
	out := make([][]*ClickHouseProcess, len(replicas))
	for s := range ports {
		for r, p := range ports[s] {
			proc := &ClickHouseProcess{Addr: "127.0.0.1:" + strconv.Itoa(p)}
			out[s] = append(out[s], proc)
			macros := fmt.Sprintf(" <macros><shard>%02d</shard><replica>r%d</replica></macros>\n", s+1, r+1)
			startClickHouse(t, p, remote.String()+macros, users, proc.Addr)
		}
	}
	for _, shard := range out { // each server has its ZooKeeper session
		for _, p := range shard {
			waitZooKeeperSession(t, p.Addr)
		}
	}
	return out
}

func waitZooKeeperSession(t testing.TB, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := archive.Open(ctx, archive.ConnConfig{Addr: addr, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for {
		var n uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'").Scan(&n)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("clickhouse-server %s has no ZooKeeper session: %v", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
