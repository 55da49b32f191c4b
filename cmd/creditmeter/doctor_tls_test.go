package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// doctor checks the Redis TLS handshake and the ACL user's permissions, and
// names the setting that is wrong.
func TestDoctorRedisTLSAndACL(t *testing.T) {
	pki := testenv.NewPKI(t)
	addr, admin := testenv.StartTLSRedis(t, pki)
	ctx := context.Background()
	for user, prefix := range map[string]string{"billing": "creditmeter:", "stranger": "other:", "noxadd": "creditmeter:"} {
		args := []any{"ACL", "SETUSER", user, "reset", ">pw"}
		for _, r := range config.RedisACLRule(prefix) {
			if user != "noxadd" || r != "+xadd" {
				args = append(args, r)
			}
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tlsFlags := []string{"--redis-tls-ca-file", pki.CA, "--redis-tls-cert-file", pki.ClientCert, "--redis-tls-key-file", pki.ClientKey}
	doctor := func(url string, extra ...string) (string, error) {
		return run(t, nil, append([]string{"doctor", "--only", "redis", "--redis-addr", url}, extra...)...)
	}
	out, err := doctor("rediss://billing:pw@"+addr, tlsFlags...)
	if err != nil || !strings.Contains(out, "reachable") || !strings.Contains(out, "ACL allows creditmeter's commands on creditmeter:*") {
		t.Errorf("doctor with the rule's user: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, url string
		flags     []string
		want      []string
	}{
		{"user of other keys", "rediss://stranger:pw@" + addr, tlsFlags, []string{"--redis-username", `"stranger"`}},
		{"another prefix", "rediss://billing:pw@" + addr, append(append([]string(nil), tlsFlags...), "--redis-key-prefix", "cm2:"), []string{"--redis-username", "cm2:"}},
		{"wrong password", "rediss://billing:nope@" + addr, tlsFlags, []string{"--redis-password"}},
		{"no CA", "rediss://billing:pw@" + addr, tlsFlags[2:], []string{"--redis-tls-ca-file", "not signed by a trusted CA"}},
		{"no client certificate", "rediss://billing:pw@" + addr, tlsFlags[:2], []string{"--redis-tls-cert-file"}},
		{"plain to the TLS port", "redis://billing:pw@" + addr, nil, []string{"--redis-addr", "TLS port"}},
	} {
		out, err := doctor(tc.url, tc.flags...)
		if err == nil || !strings.Contains(out, "UNREACHABLE") {
			t.Errorf("%s: doctor passed: %v\n%s", tc.name, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: doctor output lacks %q:\n%s", tc.name, w, out)
			}
		}
	}

	// serve refuses to start under a user the rule does not describe: a
	// script denied half-way would leave a balance without its ledger entry.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"serve", "--redis-addr", "rediss://noxadd:pw@" + addr,
		"--http-addr", "127.0.0.1:" + freePort(t), "--metrics-addr", "127.0.0.1:" + freePort(t)}, tlsFlags...)...)
	raw, err := cmd.CombinedOutput()
	out = string(raw)
	if err == nil || ctx.Err() != nil || !strings.Contains(out, "--redis-username") || !strings.Contains(out, "XADD") {
		t.Errorf("serve under a user without XADD: %v (timeout: %v)\n%s", err, ctx.Err(), out)
	}
}

// doctor on the README's ElastiCache example: a TLS-only Redis Cluster
// through one rediss:// seed with ?mode=cluster and a user with the
// least-privilege rule; each wrong setting is named, the password never shown.
func TestDoctorRedisClusterOverTLS(t *testing.T) {
	pki := testenv.NewPKI(t)
	addrs, admins := testenv.StartTLSRedisCluster(t, pki, 3)
	ctx := context.Background()
	const pass = "Cl5ter-s3cret"
	for _, admin := range admins {
		args := []any{"ACL", "SETUSER", "billing", "reset", ">" + pass}
		for _, r := range config.RedisACLRule("creditmeter:") {
			args = append(args, r)
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	url := "rediss://billing:" + pass + "@" + addrs[0] + "?mode=cluster"
	doctor := func(url string, extra ...string) (string, error) {
		return run(t, nil, append([]string{"doctor", "--only", "redis", "--redis-addr", url}, extra...)...)
	}
	out, err := doctor(url, "--redis-tls-ca-file", pki.CA)
	if err != nil || !strings.Contains(out, "reachable") || !strings.Contains(out, "(cluster) (tls) user billing") ||
		!strings.Contains(out, "ACL allows creditmeter's commands on creditmeter:*") {
		t.Errorf("doctor on the TLS cluster with the rule's user: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, url string
		flags     []string
		want      string
	}{
		{"no CA", url, nil, "--redis-tls-ca-file"},
		{"wrong password", strings.Replace(url, pass, "nope", 1), []string{"--redis-tls-ca-file", pki.CA}, "--redis-password"},
		{"plain to the TLS port", strings.Replace(url, "rediss://", "redis://", 1), nil, "--redis-addr"},
	} {
		out, err := doctor(tc.url, tc.flags...)
		if err == nil || !strings.Contains(out, "UNREACHABLE") || !strings.Contains(out, tc.want) {
			t.Errorf("%s: doctor must fail naming %s: %v\n%s", tc.name, tc.want, err, out)
		}
	}
	if strings.Contains(out, pass) {
		t.Errorf("doctor printed the password:\n%s", out)
	}
}
