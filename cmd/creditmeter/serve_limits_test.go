package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// serveInProcess runs serve on a free port of this process, API only, on the
// real Redis and ClickHouse, until the test ends; it returns the address.
func serveInProcess(t *testing.T) string {
	t.Helper()
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	_, prefix := testenv.Keyspace(t)
	_, cc := testenv.ClickHouse(t)
	cfg := testenv.Config(t)
	cfg.Kafka.Brokers = []string{b.Addr()}
	cfg.Engine.KeyPrefix = prefix
	cfg.Engine.Enabled = false
	cfg.ClickHouse.Database = cc.Database
	cfg.HTTP.AdminTokens = []string{"limits-admin-token-0123456789abcdef"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveOn(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ln, mln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	addr := ln.Addr().String()
	eventually(t, "serve answers /healthz", func() error { return get("http://" + addr + "/healthz") })
	return addr
}

// closedWithin waits for the server to close c, reading whatever it sends.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still holds the connection after %s", took.Round(time.Millisecond))
	}
	return took
}

// A client that announces a body and never sends it, and an idle keep-alive
// connection, are closed by the server within its timeouts.
func TestServeDropsSlowAndIdleConnections(t *testing.T) {
	old := httpLimits
	httpLimits.Read, httpLimits.Idle = time.Second, time.Second
	defer func() { httpLimits = old }()
	addr := serveInProcess(t)

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST /v1/currencies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer limits-admin-token-0123456789abcdef\r\n"+
		"Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	if took := closedWithin(t, slow, httpLimits.Read+4*time.Second); took < httpLimits.Read-100*time.Millisecond {
		t.Errorf("slow body dropped after %s, before the read timeout %s", took, httpLimits.Read)
	}

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(idle)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || strings.EqualFold(res.Header.Get("Connection"), "close") {
		t.Fatalf("healthz: %d, Connection %q: want a kept-alive 200", res.StatusCode, res.Header.Get("Connection"))
	}
	_ = idle.SetReadDeadline(time.Now().Add(httpLimits.Idle + 4*time.Second))
	start := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive after %s: %v, want closed by the server", time.Since(start).Round(time.Millisecond), err)
	}

	// Headers beyond MaxHeaderBytes are refused.
	big, err := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	big.Header.Set("X-Big", strings.Repeat("a", httpLimits.MaxHeaderBytes+8192))
	if res, err := http.DefaultClient.Do(big); err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("huge header: %v %v, want 431", res, err)
	}
}

func TestServeLimitsAreSet(t *testing.T) {
	l := httpLimits
	if l.ReadHeader <= 0 || l.Read < l.ReadHeader || l.Write <= 0 || l.Idle <= 0 || l.MaxHeaderBytes <= 0 || l.MaxHeaderBytes > 1<<20 {
		t.Fatalf("serve's HTTP limits: %+v", l)
	}
	srv := newHTTPServer(http.NotFoundHandler())
	if srv.ReadTimeout != l.Read || srv.WriteTimeout != l.Write || srv.IdleTimeout != l.Idle ||
		srv.ReadHeaderTimeout != l.ReadHeader || srv.MaxHeaderBytes != l.MaxHeaderBytes {
		t.Fatalf("server %+v does not carry the limits %+v", srv, l)
	}
}
