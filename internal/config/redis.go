package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis deployment modes (--redis-mode).
const (
	RedisStandalone = "standalone"
	RedisCluster    = "cluster"
	RedisSentinel   = "sentinel"
)

// RedisConn is where and how to reach Redis, resolved from the --redis-*
// settings: the one description every command and test builds its client from.
type RedisConn struct {
	Mode       string   // RedisStandalone, RedisCluster or RedisSentinel
	Addrs      []string // the server; cluster seed nodes; or the sentinels
	Username   string   // ACL user (empty: default user)
	Password   string
	DB         int
	MasterName string // sentinel only
	TLS        bool   // rediss://
	// tlsConf carries the --redis-tls-* files and names; nil: defaults.
	tlsConf *tls.Config
}

// String names the connection for logs and doctor, without the password.
func (r RedisConn) String() string {
	s := strings.Join(r.Addrs, ",")
	if r.Mode != RedisStandalone {
		s += " (" + r.Mode + ")"
	}
	if r.TLS {
		s += " (tls)"
	}
	if r.Username != "" {
		s += " user " + r.Username
	}
	if r.MasterName != "" {
		s += " master " + r.MasterName
	}
	if r.DB != 0 {
		s += " db " + strconv.Itoa(r.DB)
	}
	return s
}

// Resolve reads the Redis settings: --redis-addr is a comma-separated list of
// host:port or one redis:// / rediss:// URL; --redis-mode defaults to
// standalone for one address and cluster for several. Every error is a
// *SettingError naming its setting.
func (c Redis) Resolve() (RedisConn, error) {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &SettingError{Flag: flag, Err: fmt.Errorf(format, args...)})
	}
	r := RedisConn{Username: c.Username, Password: c.Password, DB: c.DB, MasterName: c.MasterName}
	mode := strings.TrimSpace(c.Mode)
	addr := strings.TrimSpace(c.Addr)
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		switch {
		case err != nil:
			bad("redis-addr", "%s", urlParseError(addr))
		case u.Scheme != "redis" && u.Scheme != "rediss":
			bad("redis-addr", "URL must start with redis:// or rediss://, got %q", u.Scheme+"://")
		default:
			r.TLS = u.Scheme == "rediss"
			hosts := []string{u.Host}
			q := u.Query()
			for k, vs := range q {
				switch k {
				case "addr":
					hosts = append(hosts, vs...)
				case "mode":
					if mode == "" {
						mode = q.Get(k)
					} else if q.Get(k) != mode {
						bad("redis-mode", "%q differs from mode=%s in --redis-addr", mode, q.Get(k))
					}
				case "master_name":
					if r.MasterName == "" {
						r.MasterName = q.Get(k)
					} else if q.Get(k) != r.MasterName {
						bad("redis-master-name", "%q differs from master_name=%s in --redis-addr", r.MasterName, q.Get(k))
					}
				default:
					bad("redis-addr", "unknown option %q in the URL (known: addr, mode, master_name)", k)
				}
			}
			for _, h := range hosts {
				if h != "" && !strings.Contains(strings.TrimPrefix(h, "["), "]:") && strings.Count(h, ":") == 0 {
					h += ":6379"
				}
				r.Addrs = append(r.Addrs, h)
			}
			if u.User != nil {
				if name := u.User.Username(); name != "" {
					if r.Username != "" && r.Username != name {
						bad("redis-username", "differs from the username in --redis-addr")
					}
					r.Username = name
				}
				if pw, ok := u.User.Password(); ok && pw != "" {
					if r.Password != "" && r.Password != pw {
						bad("redis-password", "differs from the password in --redis-addr")
					}
					r.Password = pw
				}
			}
			if p := strings.Trim(u.Path, "/"); p != "" {
				db, err := strconv.Atoi(p)
				switch {
				case err != nil && strings.Contains(p, "@"):
					// An unencoded / in the password: the path is its tail.
					bad("redis-addr", "the URL's path must be a database number; percent-encode a / in the password as %%2F")
				case err != nil:
					bad("redis-addr", "the URL's path must be a database number, got %q", p)
				default:
					if r.DB != 0 && r.DB != db {
						bad("redis-db", "%d differs from database %d in --redis-addr", r.DB, db)
					}
					r.DB = db
				}
			}
		}
	} else {
		r.Addrs = splitList(addr)
	}
	if len(r.Addrs) == 0 && len(errs) == 0 {
		bad("redis-addr", "at least one address is required")
	}
	for _, a := range r.Addrs {
		if err := checkHostPort(a); err != nil {
			bad("redis-addr", "%v", err)
		}
	}
	switch mode {
	case "":
		r.Mode = RedisStandalone
		if len(r.Addrs) > 1 {
			r.Mode = RedisCluster
		}
	case RedisStandalone, RedisCluster, RedisSentinel:
		r.Mode = mode
	default:
		bad("redis-mode", "must be standalone, cluster or sentinel, got %q", mode)
	}
	if r.Mode == RedisStandalone && len(r.Addrs) > 1 {
		bad("redis-mode", "standalone takes one address, --redis-addr has %d (cluster or sentinel?)", len(r.Addrs))
	}
	if r.Mode == RedisSentinel && r.MasterName == "" {
		bad("redis-master-name", "required with --redis-mode sentinel")
	}
	if r.Mode != RedisSentinel && r.MasterName != "" {
		bad("redis-master-name", "only with --redis-mode sentinel, mode is %s", r.Mode)
	}
	if r.DB < 0 || r.DB > 15 {
		bad("redis-db", "must be between 0 and 15, got %d", r.DB)
	} else if r.Mode == RedisCluster && r.DB != 0 {
		bad("redis-db", "a Redis Cluster has only database 0, got %d", r.DB)
	}
	tc, tlsErrs := c.RedisTLS.config(r.TLS)
	r.tlsConf = tc
	errs = append(errs, tlsErrs...)
	return r, errors.Join(errs...)
}

// RedisTuning adjusts a client for its use; zero values keep go-redis's defaults.
type RedisTuning struct {
	PoolSize    int           // per node
	MaxRetries  int           // -1: no retries (health checks)
	DialTimeout time.Duration // default 5s
}

// NewRedisClient is the one way creditmeter builds its Redis client from the
// settings: a plain client, a cluster client or a sentinel failover client.
func NewRedisClient(c Redis, tune RedisTuning) (redis.UniversalClient, RedisConn, error) {
	r, err := c.Resolve()
	if err != nil {
		return nil, r, err
	}
	return r.NewClient(tune), r, nil
}

// NewClient builds the client of a resolved connection.
func (r RedisConn) NewClient(tune RedisTuning) redis.UniversalClient {
	// No fixed ServerName by default: crypto/tls then checks each node
	// (cluster nodes, the master a sentinel names) against its own host.
	var tc *tls.Config
	if r.TLS {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
		if r.tlsConf != nil {
			tc = r.tlsConf.Clone()
		}
	}
	var rc redis.UniversalClient
	switch r.Mode {
	case RedisCluster:
		rc = redis.NewClusterClient(&redis.ClusterOptions{Addrs: r.Addrs, Username: r.Username, Password: r.Password,
			TLSConfig: tc, PoolSize: tune.PoolSize, MaxRetries: tune.MaxRetries, DialTimeout: tune.DialTimeout})
	case RedisSentinel:
		rc = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: r.MasterName, SentinelAddrs: r.Addrs,
			Username: r.Username, Password: r.Password, DB: r.DB,
			TLSConfig: tc, PoolSize: tune.PoolSize, MaxRetries: tune.MaxRetries, DialTimeout: tune.DialTimeout})
	default:
		rc = redis.NewClient(&redis.Options{Addr: r.Addrs[0], Username: r.Username, Password: r.Password, DB: r.DB,
			TLSConfig: tc, PoolSize: tune.PoolSize, MaxRetries: tune.MaxRetries, DialTimeout: tune.DialTimeout})
	}
	rc.AddHook(explainHook{r})
	return rc
}

// redactURL replaces the password of a URL's user info with xxxxx, working on
// text that url.Parse may refuse.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	// The last @ ends the user info even when an unencoded password holds
	// / ? # or @ (a Redis URL's path and options never hold one).
	rest := s[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPw := strings.Cut(rest[:at], ":")
	if hasPw {
		user += ":xxxxx"
	}
	return s[:i+3] + user + rest[at:]
}

// urlParseError says why a --redis-addr URL does not parse without quoting
// its password (url.Parse's error quotes the whole URL).
func urlParseError(addr string) string {
	red := redactURL(addr)
	if _, err := url.Parse(red); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Sprintf("cannot parse URL %q: %v", red, ue.Err)
		}
		return fmt.Sprintf("cannot parse URL %q", red)
	}
	return fmt.Sprintf("cannot parse URL %q: the user or password is not valid URL text (percent-encode %% / : @ ? # and spaces)", red)
}
