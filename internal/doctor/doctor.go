// Package doctor checks that each service creditmeter needs answers at the
// address configured for it.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/config"
)

// Result is one service's check.
type Result struct {
	Service string
	Addr    string
	Err     error
	Took    time.Duration
	// Note qualifies a reachable service, e.g. the ClickHouse database is
	// missing (serve creates it, so that alone is not a failure).
	Note string
}

// Services are the names Check knows, in the order it checks them.
var Services = []string{"kafka", "redis", "clickhouse", "prometheus"}

// Check checks the named services (all when none are named).
func Check(ctx context.Context, c config.Config, only ...string) []Result {
	if len(only) == 0 {
		only = Services
	}
	var out []Result
	for _, s := range only {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r := Result{Service: s}
		switch s {
		case "kafka":
			r.Addr = strings.Join(c.Kafka.Brokers, ",")
			r.Note, r.Err = pingKafka(cctx, c.Kafka)
		case "redis":
			r.Addr, r.Note, r.Err = pingRedis(cctx, c.Redis, c.Engine.KeyPrefix)
		case "clickhouse":
			r.Addr = c.ClickHouse.Addr
			r.Note, r.Err = clickhouseDatabase(cctx, c.ClickHouse)
		case "prometheus":
			r.Addr = c.Prometheus.URL
			r.Err = httpReady(cctx, strings.TrimRight(c.Prometheus.URL, "/")+"/-/ready")
		default:
			r.Err = fmt.Errorf("unknown service %q (want one of %s)", s, strings.Join(Services, ", "))
		}
		cancel()
		r.Took = time.Since(start)
		out = append(out, r)
	}
	return out
}

// pingKafka connects to every broker as serve does (TLS handshake and SASL
// authentication included) and says how it connected.
func pingKafka(ctx context.Context, k config.Kafka) (string, error) {
	conn, err := k.Conn()
	if err != nil {
		return "", err
	}
	if err := conn.Ping(ctx); err != nil {
		return "", err
	}
	mode := "plaintext"
	switch {
	case conn.TLS != nil && conn.SASL != nil:
		mode = "TLS, SASL " + conn.SASL.Name() + " as " + k.SASLUsername
	case conn.TLS != nil:
		mode = "TLS"
	case conn.SASL != nil:
		mode = "SASL " + conn.SASL.Name() + " as " + k.SASLUsername + ", without TLS"
	}
	if conn.TLS != nil && conn.TLS.InsecureSkipVerify {
		mode += " (certificate NOT verified: --kafka-tls-insecure-skip-verify)"
	}
	return mode, nil
}

// clickhouseDatabase checks the server answers (TLS handshake, credentials,
// a supported version) and says whether the configured database exists.
func clickhouseDatabase(ctx context.Context, c config.ClickHouse) (string, error) {
	cc := archive.ConnConfigOf(c)
	cc.Database = ""
	conn, err := archive.Open(ctx, cc)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	version := ""
	if v, err := conn.ServerVersion(); err == nil {
		version = fmt.Sprintf("version %d.%d.%d, ", v.Version.Major, v.Version.Minor, v.Version.Patch)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", c.Database).Scan(&n); err != nil {
		return "", fmt.Errorf("clickhouse %s: list databases: %w", c.Addr, err)
	}
	topology := ""
	if c.Cluster != "" {
		if topology, err = clickhouseCluster(ctx, cc); err != nil {
			return "", err
		}
	} else if topology, err = clickhouseHosts(ctx, cc); err != nil {
		return "", err
	}
	if n == 0 {
		return version + fmt.Sprintf("database %q does not exist (--clickhouse-database): serve creates it at start; invoice, reconcile and SQL need it", c.Database) + topology, nil
	}
	return version + fmt.Sprintf("database %q", c.Database) + topology, nil
}

// clickhouseHosts checks each of several --clickhouse-addr hosts on its
// own: the connection only tries the next host when one fails, so a failover
// host with a wrong setting would show only when it is needed. A host that
// does not answer is noted; one that answers with a setting error fails.
func clickhouseHosts(ctx context.Context, cc archive.ConnConfig) (string, error) {
	var hosts []string
	for _, h := range strings.Split(cc.Addr, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) < 2 {
		return "", nil
	}
	var down []string
	for _, h := range hosts {
		one := cc
		one.Addr = h
		conn, err := archive.Open(ctx, one)
		var se *config.SettingError
		switch {
		case errors.As(err, &se):
			return "", fmt.Errorf("host %s of --clickhouse-addr: %w", h, err)
		case err != nil:
			down = append(down, fmt.Sprintf("%s does not answer (%v)", h, err))
		default:
			conn.Close()
		}
	}
	note := fmt.Sprintf("; %d of %d hosts answer", len(hosts)-len(down), len(hosts))
	if len(down) > 0 {
		note += ": " + strings.Join(down, "; ")
	}
	return note, nil
}

// clickhouseCluster checks that every host of --clickhouse-cluster answers
// with the same credentials and TLS, and says how many there are.
func clickhouseCluster(ctx context.Context, cc archive.ConnConfig) (string, error) {
	hosts, err := archive.ClusterHosts(ctx, cc)
	if err != nil {
		return "", err
	}
	for _, h := range hosts {
		one := cc
		one.Addr, one.Cluster = h, ""
		conn, err := archive.Open(ctx, one)
		if err != nil {
			return "", &config.SettingError{Flag: "clickhouse-cluster",
				Err: fmt.Errorf("host %s of cluster %q (system.clusters of %s): %w", h, cc.Cluster, cc.Addr, err)}
		}
		conn.Close()
	}
	return fmt.Sprintf("; cluster %q: %d hosts answer (%s)", cc.Cluster, len(hosts), strings.Join(hosts, ", ")), nil
}

func httpReady(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// pingRedis pings Redis the way creditmeter connects to it; on a cluster it
// pings every master and replica and requires cluster_state:ok, so a shard
// that is down is reported, not only the seed node that answered. Then it
// checks the user may run what creditmeter runs on keys under prefix.
func pingRedis(ctx context.Context, c config.Redis, prefix string) (string, string, error) {
	rc, conn, err := config.NewRedisClient(c, config.RedisTuning{MaxRetries: -1})
	if err != nil {
		return c.Addr, "", err
	}
	defer rc.Close()
	if err := rc.Ping(ctx).Err(); err != nil {
		return conn.String(), "", plainToTLS(conn, err)
	}
	if cc, ok := rc.(*redis.ClusterClient); ok {
		err := cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			info, err := n.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Errorf("node %s: %w", n.Options().Addr, config.ExplainRedisError(conn, err))
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("node %s: cluster_state is not ok", n.Options().Addr)
			}
			return nil
		})
		if err != nil {
			return conn.String(), "", err
		}
	}
	if err := config.CheckRedisACL(ctx, rc, conn, prefix); err != nil {
		return conn.String(), "", err
	}
	return conn.String(), "ACL allows creditmeter's commands on " + prefix + "*", nil
}

// plainToTLS names --redis-addr when a plain connection is dropped at once,
// as a TLS-only port does.
func plainToTLS(conn config.RedisConn, err error) error {
	if conn.TLS || !(errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset by peer")) {
		return err
	}
	//lint:ignore ST1005 Redis is a proper noun; operators read this message
	return &config.SettingError{Flag: "redis-addr", Err: fmt.Errorf("Redis closed the plain connection: is this a TLS port (rediss://)? %w", err)}
}
