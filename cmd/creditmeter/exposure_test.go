package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const longAdminToken = "exposure-test-admin-token-0123456789"

// body GETs url with an optional bearer token and returns status and body.
func body(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Started with Kafka, Redis and ClickHouse all unreachable, serve is
// waiting for them: that is backpressure (EngineBackpressure must fire),
// /metrics is on its own listener only, /readyz tells an anonymous caller
// nothing about the internals, and go-redis's complaints come out as slog
// lines.
func TestServeWithEveryServiceDown(t *testing.T) {
	down := "127.0.0.1:" + freePort(t)
	httpAddr, metricsAddr := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "serve", "--http-addr", httpAddr, "--metrics-addr", metricsAddr, "--admin-tokens", longAdminToken,
		"--kafka-brokers", down, "--redis-addr", down, "--clickhouse-addr", down)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("serve exited with %v after SIGTERM:\n%s", err, out.String())
		}
	})
	base := "http://" + httpAddr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })

	eventually(t, "creditmeter_backpressure 1 while waiting for the services", func() error {
		code, m := body(t, "http://"+metricsAddr+"/metrics", "")
		if code != http.StatusOK || !strings.Contains(m, "\ncreditmeter_backpressure 1\n") {
			return fmt.Errorf("status %d, backpressure line %q", code, grepLine(m, "creditmeter_backpressure "))
		}
		return nil
	})
	if code, _ := body(t, base+"/metrics", ""); code != http.StatusNotFound {
		t.Errorf("/metrics on the API listener: %d, want 404", code)
	}

	code, anon := body(t, base+"/readyz", "")
	if code != http.StatusServiceUnavailable {
		t.Errorf("anonymous /readyz: %d, want 503", code)
	}
	for _, secret := range []string{down, "127.0.0.1", "redis", "clickhouse", "kafka", "refused"} {
		if strings.Contains(anon, secret) {
			t.Errorf("anonymous /readyz reveals %q: %s", secret, anon)
		}
	}
	code, admin := body(t, base+"/readyz", longAdminToken)
	if code != http.StatusServiceUnavailable || !strings.Contains(admin, "redis") || !strings.Contains(admin, "clickhouse") || !strings.Contains(admin, "kafka") {
		t.Errorf("admin /readyz: %d %s, want 503 naming every service down", code, admin)
	}

	// Redis's client logs dial failures itself; they must come out as slog
	// lines, not as go-redis's own "pool.go:NNN" lines.
	eventually(t, "go-redis's dial failure logged through slog", func() error {
		if !strings.Contains(out.String(), `msg="redis client"`) {
			return fmt.Errorf("no slog line from go-redis yet")
		}
		return nil
	})
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "time=") || strings.Contains(l, "pool.go:") {
			t.Errorf("a log line bypasses slog: %q", l)
		}
	}
}

func grepLine(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// /readyz is public: probes, however many, must not each open connections
// to the services. A listener standing in for Kafka counts the dials.
func TestReadyzProbesAreCached(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var dials atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	down := "127.0.0.1:" + freePort(t)
	httpAddr := "127.0.0.1:" + freePort(t)
	start(t, "serve", "--engine=false", "--http-addr", httpAddr, "--metrics-addr", "127.0.0.1:"+freePort(t),
		"--kafka-brokers", ln.Addr().String(), "--redis-addr", down, "--clickhouse-addr", down)
	base := "http://" + httpAddr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })
	before := dials.Load()
	began := time.Now()
	const probes = 40
	for range probes {
		if code, _ := body(t, base+"/readyz", ""); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz: %d, want 503", code)
		}
	}
	took := time.Since(began)
	// One check per second at most, plus the one that may be in flight.
	if n, most := dials.Load()-before, int64(took/time.Second)+2; n > most {
		t.Errorf("%d probes in %s dialled Kafka %d times, want at most %d", probes, took.Round(time.Millisecond), n, most)
	}
}

func TestServeRefusesShortAdminToken(t *testing.T) {
	out, err := run(t, nil, "serve", "--admin-tokens", "only-twenty-one-chars")
	if err == nil {
		t.Fatal("serve started with a 21-character admin token")
	}
	if !strings.Contains(out, "--admin-tokens (CREDITMETER_ADMIN_TOKENS)") || !strings.Contains(out, "32 characters") {
		t.Errorf("the error does not name the setting and the rule:\n%s", out)
	}
}
