package config_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// The README's ElastiCache example: cluster mode over TLS only (clients and
// cluster bus), one seed address in a rediss:// URL with ?mode=cluster, an
// ACL user with the least-privilege rule, the CA from --redis-tls-ca-file.
// The client finds every master through the seed over TLS, the catalog and
// balances of subscriptions spread over the masters work, and wrong
// settings are named.
func TestRedisClusterOverTLSWithACLUser(t *testing.T) {
	logs := captureRedisLogs(t)
	pki := testenv.NewPKI(t)
	addrs, admins := testenv.StartTLSRedisCluster(t, pki, 3)
	ctx := context.Background()
	pfx := "cm" + testenv.RandomID(t)[:6] + ":"
	for _, admin := range admins { // ACL users are per node
		for user, rule := range map[string][]string{"billing": config.RedisACLRule(pfx), "otherkeys": config.RedisACLRule("other:")} {
			args := []any{"ACL", "SETUSER", user, "reset", ">pw-" + user}
			for _, r := range rule {
				args = append(args, r)
			}
			if err := admin.Do(ctx, args...).Err(); err != nil {
				t.Fatalf("ACL SETUSER %s: %v", user, err)
			}
		}
	}
	settings := func(user string) config.Redis {
		return config.Redis{Addr: "rediss://" + user + ":pw-" + user + "@" + addrs[0] + "?mode=cluster",
			RedisTLS: config.RedisTLS{TLSCAFile: pki.CA}}
	}
	client := func(c config.Redis) (redis.UniversalClient, config.RedisConn) {
		t.Helper()
		rc, conn, err := config.NewRedisClient(c, config.RedisTuning{MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		return rc, conn
	}

	rc, conn := client(settings("billing"))
	if conn.Mode != config.RedisCluster || !conn.TLS {
		t.Fatalf("resolved %s, want a TLS cluster", conn)
	}
	cl, ok := rc.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("client %T, want a cluster client", rc)
	}
	var mu sync.Mutex
	masters := map[string]bool{}
	if err := cl.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		masters[c.Options().Addr] = true
		mu.Unlock()
		return c.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("ping every master over TLS: %v", err)
	}
	if len(masters) != 3 {
		t.Fatalf("found masters %v from one seed, want the 3 TLS nodes", masters)
	}
	if err := config.CheckRedisACL(ctx, rc, conn, pfx); err != nil {
		t.Fatalf("ACL check on the cluster: %v", err)
	}

	cat, err := catalogstore.New(rc, pfx)
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Catalog(ctx, cat); err != nil {
		t.Fatalf("catalog on the TLS cluster: %v", err)
	}
	archiveConn, _ := testenv.Archive(t)
	bal, err := balance.New(rc, balance.Options{Prefix: pfx})
	if err != nil {
		t.Fatal(err)
	}
	acc := &accounts.Accounts{Store: bal, Archive: archive.NewWriter(archiveConn)}
	now := time.Now().UTC()
	var batches []balance.Batch
	for i, cust := range []string{"acme", "globex", "initech", "umbrella", "hooli", "wonka"} {
		sub, err := seed.Subscribe(ctx, cat, acc, seed.Subscription{Customer: cust, Plan: seed.PlanUnfunded, Included: "100"})
		if err != nil {
			t.Fatalf("subscribe %s on the TLS cluster: %v", cust, err)
		}
		batches = append(batches, balance.Batch{Subscription: sub, Topic: "usage-events", Partition: int32(i), Lines: []balance.Line{
			{EventID: cust + "-1", Offset: 1, Time: now, Credits: credit.Credits(3)}}})
	}
	res, err := bal.Apply(ctx, batches)
	if err != nil {
		t.Fatalf("apply on the TLS cluster: %v", err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("apply %s: %v", batches[i].Subscription, r.Err)
		}
		v, err := bal.Balance(ctx, batches[i].Subscription)
		if err != nil || v.Total != credit.Credits(97) {
			t.Fatalf("balance of %s: %+v %v, want 97", batches[i].Subscription, v, err)
		}
	}
	// go-redis's cluster client asks COMMAND for routing and read-only
	// information before each command until it has an answer: the rule
	// must allow it, or every command costs a round trip and a log line.
	for _, l := range logs.lines() {
		if strings.Contains(l, "NOPERM") {
			t.Fatalf("go-redis under the rule's user logged %q", l)
		}
	}
	holding := 0
	for _, admin := range admins {
		if n, err := admin.DBSize(ctx).Result(); err == nil && n > 0 {
			holding++
		}
	}
	if holding < 2 {
		t.Errorf("keys on %d of 3 masters: the test did not spread over the cluster", holding)
	}

	for _, tc := range []struct {
		name string
		c    config.Redis
		flag string
	}{
		{"system roots do not know the CA", func() config.Redis { c := settings("billing"); c.TLSCAFile = ""; return c }(), "redis-tls-ca-file"},
		{"another CA", func() config.Redis { c := settings("billing"); c.TLSCAFile = pki.OtherCA; return c }(), "redis-tls-ca-file"},
		{"wrong password", func() config.Redis {
			c := settings("billing")
			c.Addr = strings.Replace(c.Addr, "pw-billing", "nope", 1)
			return c
		}(), "redis-password"},
	} {
		rc, _ := client(tc.c)
		if err := rc.Ping(ctx).Err(); settingOf(err) != tc.flag {
			t.Errorf("%s: %v, want an error naming --%s", tc.name, err, tc.flag)
		}
	}
	orc, oconn := client(settings("otherkeys"))
	if err := config.CheckRedisACL(ctx, orc, oconn, pfx); settingOf(err) != "redis-username" || !strings.Contains(err.Error(), `"otherkeys"`) {
		t.Errorf("ACL check of a user of other keys: %v, want an error naming --redis-username", err)
	}
}

type redisLogs struct {
	mu  sync.Mutex
	buf []string
}

func (l *redisLogs) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, fmt.Sprintf(format, v...))
}

func (l *redisLogs) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.buf...)
}

// captureRedisLogs collects go-redis's log lines until the test ends.
func captureRedisLogs(t *testing.T) *redisLogs {
	l := &redisLogs{}
	redis.SetLogger(l)
	t.Cleanup(func() {
		redis.SetLogger(stdRedisLog{})
		for _, s := range l.lines() {
			t.Log("go-redis: " + s)
		}
	})
	return l
}

type stdRedisLog struct{}

func (stdRedisLog) Printf(_ context.Context, format string, v ...any) { log.Printf(format, v...) }
