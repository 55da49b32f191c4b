package config_test

import (
	"context"
	"errors"
	"strings"
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
	"github.com/creditmeter/creditmeter/lease"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

func settingOf(err error) string {
	var se *config.SettingError
	if errors.As(err, &se) {
		return se.Flag
	}
	return ""
}

// A user with the README's least-privilege rule, over TLS with a client
// certificate, runs the catalog, balances (scripts, stream ledger, WAIT,
// INFO) and leases; a user whose rule lacks the key pattern or a command is
// refused with an error naming --redis-username; each wrong TLS setting is
// named.
func TestRedisTLSWithLeastPrivilegeACLUser(t *testing.T) {
	pki := testenv.NewPKI(t)
	addr, admin := testenv.StartTLSRedis(t, pki)
	ctx := context.Background()
	pfx := "cm" + testenv.RandomID(t)[:6] + ":"
	setUser := func(name string, rule []string) {
		t.Helper()
		args := []any{"ACL", "SETUSER", name, "reset", ">pw-" + name}
		for _, r := range rule {
			args = append(args, r)
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %s %v: %v", name, rule, err)
		}
	}
	setUser("billing", config.RedisACLRule(pfx))
	setUser("otherkeys", config.RedisACLRule("other:"))
	var noXadd []string
	for _, r := range config.RedisACLRule(pfx) {
		if r != "+xadd" {
			noXadd = append(noXadd, r)
		}
	}
	setUser("noxadd", noXadd)

	settings := func(user string) config.Redis {
		return config.Redis{Addr: "rediss://" + user + ":pw-" + user + "@" + addr,
			RedisTLS: config.RedisTLS{TLSCAFile: pki.CA, TLSCertFile: pki.ClientCert, TLSKeyFile: pki.ClientKey}}
	}
	client := func(c config.Redis) redis.UniversalClient {
		t.Helper()
		rc, _, err := config.NewRedisClient(c, config.RedisTuning{MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		return rc
	}

	// The product's own operations under the rule.
	rc, conn0, err := config.NewRedisClient(settings("billing"), config.RedisTuning{MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	if err := config.CheckRedisACL(ctx, rc, conn0, pfx); err != nil {
		t.Fatalf("the rule's own check: %v", err)
	}
	if who, err := rc.Do(ctx, "ACL", "WHOAMI").Text(); err == nil {
		t.Fatalf("ACL WHOAMI answered %q: the rule grants more than it lists", who)
	}
	cat, err := catalogstore.New(rc, pfx)
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Catalog(ctx, cat); err != nil {
		t.Fatalf("catalog under the rule: %v", err)
	}
	conn, _ := testenv.Archive(t)
	bal, err := balance.New(rc, balance.Options{Prefix: pfx})
	if err != nil {
		t.Fatal(err)
	}
	acc := &accounts.Accounts{Store: bal, Archive: archive.NewWriter(conn)}
	sub, err := seed.Subscribe(ctx, cat, acc, seed.Subscription{Customer: "acme", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatalf("subscribe under the rule: %v", err)
	}
	if _, _, err := cat.Load(ctx); err != nil {
		t.Fatalf("catalog load under the rule: %v", err)
	}
	now := time.Now().UTC()
	res, err := bal.Apply(ctx, []balance.Batch{{Subscription: sub, Topic: "usage-events", Partition: 0, Lines: []balance.Line{
		{EventID: "e1", Offset: 1, Time: now, Credits: credit.Credits(3)}, {EventID: "e2", Offset: 2, Time: now, Credits: credit.Credits(4)}}}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("apply under the rule: %v %+v", err, res)
	}
	if _, err := bal.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: sub, Amount: credit.Credits(300)}); err != nil {
		t.Fatalf("top-up under the rule: %v", err)
	}
	v, err := bal.Balance(ctx, sub)
	if err != nil {
		t.Fatalf("balance under the rule: %v", err)
	}
	if want := credit.Credits(393); v.Total != want {
		t.Fatalf("balance %s, want %s", v.Total, want)
	}
	if ents, err := bal.Ledger(ctx, sub, 0, 100); err != nil || len(ents) < 3 {
		t.Fatalf("ledger under the rule: %d entries, %v", len(ents), err)
	}
	if _, err := bal.Check(ctx, sub, credit.Credits(10)); err != nil {
		t.Fatalf("check under the rule: %v", err)
	}
	if _, err := bal.Identity(ctx); err != nil {
		t.Fatalf("INFO under the rule: %v", err)
	}
	// No replica: WAIT runs and reports too few acknowledgements, not NOPERM.
	if err := bal.WaitReplicas(ctx, 1, 20*time.Millisecond); err == nil || strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("WAIT under the rule: %v, want 0 of 1 replicas", err)
	}
	l, err := lease.New(rc, pfx, "sweep", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryAcquire(ctx); err != nil || !ok {
		t.Fatalf("lease under the rule: %v %v", ok, err)
	}
	if ok, err := l.Renew(ctx); err != nil || !ok {
		t.Fatalf("lease renew under the rule: %v %v", ok, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("lease release under the rule: %v", err)
	}

	// Users the rule does not describe.
	other, err := catalogstore.New(client(settings("otherkeys")), pfx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Currencies(ctx); settingOf(err) != "redis-username" || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), `"otherkeys"`) {
		t.Fatalf("catalog read with keys outside the rule: %v, want a NOPERM error naming --redis-username and the user", err)
	}
	for user, want := range map[string]string{"otherkeys": `user "otherkeys" may not run EVAL on keys ` + pfx + "*", "noxadd": "may not run XADD on keys " + pfx + "*"} {
		c, err := settings(user).Resolve()
		if err != nil {
			t.Fatal(err)
		}
		err = config.CheckRedisACL(ctx, client(settings(user)), c, pfx)
		if settingOf(err) != "redis-username" || !strings.Contains(err.Error(), want) {
			t.Errorf("ACL check of %s: %v, want an error naming --redis-username containing %q", user, err, want)
		}
	}
	// Redis does not roll a script back: without the check a top-up would
	// leave a balance changed without its ledger entry. It still names the
	// setting.
	nox, err := balance.New(client(settings("noxadd")), balance.Options{Prefix: pfx})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nox.TopUp(ctx, balance.TopUpRequest{Key: "t2", Subscription: sub, Amount: credit.Credits(300)}); settingOf(err) != "redis-username" || !strings.Contains(err.Error(), "may not do this") {
		t.Fatalf("top-up by a user without XADD: %v, want a NOPERM error naming --redis-username", err)
	}

	// Wrong TLS and auth settings, each named.
	for _, tc := range []struct {
		name string
		edit func(*config.Redis)
		flag string
	}{
		{"system roots do not know the CA", func(c *config.Redis) { c.TLSCAFile = "" }, "redis-tls-ca-file"},
		{"another CA", func(c *config.Redis) { c.TLSCAFile = pki.OtherCA }, "redis-tls-ca-file"},
		{"no client certificate", func(c *config.Redis) { c.TLSCertFile, c.TLSKeyFile = "", "" }, "redis-tls-cert-file"},
		{"wrong server name", func(c *config.Redis) { c.TLSServerName = "cache.example" }, "redis-tls-server-name"},
		{"wrong password", func(c *config.Redis) { c.Addr = strings.Replace(c.Addr, "pw-billing", "nope", 1) }, "redis-password"},
	} {
		c := settings("billing")
		tc.edit(&c)
		err := client(c).Ping(ctx).Err()
		if settingOf(err) != tc.flag {
			t.Errorf("%s: %v, want an error naming --%s", tc.name, err, tc.flag)
		}
	}
	c := settings("billing")
	c.TLSServerName = "redis.test"
	if err := client(c).Ping(ctx).Err(); err != nil {
		t.Errorf("server name redis.test (in the certificate): %v", err)
	}
}
