package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "creditmeter-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "creditmeter")
	if out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// issuedPorts are the ports freePort gave out: the listener it probes with
// is closed before the caller binds, so the kernel may offer the same port
// again (a serve once got it for both --http-addr and --metrics-addr).
var issuedPorts sync.Map

func freePort(t *testing.T) string {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if _, taken := issuedPorts.LoadOrStore(port, true); !taken {
			return strconv.Itoa(port)
		}
	}
}

func run(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start runs a long-lived subcommand and stops it with SIGTERM at cleanup,
// failing the test if it does not exit cleanly.
func start(t *testing.T, args ...string) *bytes.Buffer {
	t.Helper()
	if args[0] == "serve" && !slices.Contains(args, "--metrics-addr") {
		// parallel tests must not share the default metrics port
		args = append(args, "--metrics-addr", "127.0.0.1:"+freePort(t))
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM:\n%s", args[0], err, out.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop within 15s of SIGTERM", args[0])
		}
	})
	return &out
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHelpNamesEveryFlagsVariable(t *testing.T) {
	for _, sub := range []string{"serve", "broker", "doctor"} {
		out, err := run(t, nil, sub, "--help")
		if err != nil {
			t.Fatalf("%s --help: %v\n%s", sub, err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "--") && !strings.HasPrefix(line, "--only") && !strings.Contains(line, "$CREDITMETER_") {
				t.Errorf("%s --help: flag line without its variable: %q", sub, line)
			}
		}
	}
}

func TestInvalidSettingIsNamed(t *testing.T) {
	out, err := run(t, []string{"CREDITMETER_REDIS_ADDR=nohost"}, "doctor")
	if err == nil {
		t.Fatal("want non-zero exit")
	}
	if !strings.Contains(out, "--redis-addr (CREDITMETER_REDIS_ADDR)") {
		t.Errorf("error does not name the setting:\n%s", out)
	}
}

func TestBrokerAndDoctor(t *testing.T) {
	port := freePort(t)
	addr := "127.0.0.1:" + port
	start(t, "broker", "--listen", addr, "--data-dir", t.TempDir(), "--partitions", "2")
	eventually(t, "broker answers doctor", func() error {
		_, err := run(t, nil, "doctor", "--only", "kafka", "--kafka-brokers", addr)
		return err
	})
	out, err := run(t, nil, "doctor", "--only", "kafka", "--kafka-brokers", addr)
	if err != nil || !strings.Contains(out, "reachable") || !strings.Contains(out, addr) {
		t.Errorf("doctor on a running broker: %v\n%s", err, out)
	}

	closed := "127.0.0.1:" + freePort(t)
	out, err = run(t, nil, "doctor", "--only", "kafka,redis", "--kafka-brokers", closed, "--redis-addr", closed)
	if err == nil {
		t.Error("doctor must exit non-zero when a service is unreachable")
	}
	for _, want := range []string{"kafka      UNREACHABLE  " + closed, "redis      UNREACHABLE  " + closed} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
}

func TestServeHealthReadyMetrics(t *testing.T) {
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	c := testenv.Config(t)
	// readiness needs the real Redis and ClickHouse too.
	testenv.Redis(t)
	testenv.ClickHouse(t)
	httpAddr, metricsAddr := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	start(t, "serve", "--http-addr", httpAddr, "--metrics-addr", metricsAddr, "--kafka-brokers", b.Addr(), "--redis-addr", c.Redis.Addr, "--clickhouse-addr", c.ClickHouse.Addr)
	base := "http://" + httpAddr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })
	// Ready once the engine has loaded the catalog and created the archive tables.
	eventually(t, "readyz with all services up", func() error { return get(base + "/readyz") })
	if err := get("http://" + metricsAddr + "/metrics"); err != nil {
		t.Errorf("metrics: %v", err)
	}
	// The series name customers and subscriptions: not on the public API.
	if code, err := httpGet(base + "/metrics"); err != nil || code != http.StatusNotFound {
		t.Errorf("/metrics on the API listener: %v %d, want 404", err, code)
	}
	if err := get(base + "/console/"); err != nil {
		t.Errorf("the console is not served: %v", err)
	}
	if code, err := httpGet(base + "/nope"); err != nil || code != http.StatusNotFound {
		t.Errorf("unknown route: %v %d", err, code)
	}

	// With Redis unreachable the engine is alive but not ready.
	downAddr := "127.0.0.1:" + freePort(t)
	start(t, "serve", "--http-addr", downAddr, "--metrics-addr", "127.0.0.1:"+freePort(t), "--kafka-brokers", b.Addr(), "--redis-addr", "127.0.0.1:"+freePort(t), "--clickhouse-addr", c.ClickHouse.Addr)
	eventually(t, "second serve answers /healthz", func() error { return get("http://" + downAddr + "/healthz") })
	if code, err := httpGet("http://" + downAddr + "/readyz"); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("readyz with redis down: %v %d, want 503", err, code)
	}
}

func httpGet(url string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// send sends a JSON request with an admin bearer token (and headers as
// name, value pairs) and returns the status and body.
func send(t *testing.T, method, url, token, body string, headers ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func get(url string) error {
	code, err := httpGet(url)
	if err != nil {
		return err
	}
	if code != 200 {
		return &statusError{url, code}
	}
	return nil
}

type statusError struct {
	url  string
	code int
}

func (e *statusError) Error() string { return e.url + ": status " + strconv.Itoa(e.code) }

// freePort never gives the same port twice in a process.
func TestFreePortIsNeverRepeated(t *testing.T) {
	seen := map[string]bool{}
	for range 300 {
		p := freePort(t)
		if seen[p] {
			t.Fatalf("port %s given twice", p)
		}
		seen[p] = true
	}
}
