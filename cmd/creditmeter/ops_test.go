package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

func TestVersion(t *testing.T) {
	out, err := run(t, nil, "version", "--json")
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	var b build
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("version --json: %v\n%s", err, out)
	}
	if b.GoVersion != runtime.Version() || b.Version == "" || b.Revision == "" {
		t.Errorf("version --json = %+v, want Go %s and a version and revision", b, runtime.Version())
	}

	// What make build and the Dockerfile stamp at link time wins.
	version, revision, commitTime = "v1.2.3", "0123abcd", "2026-11-30T12:00:00Z"
	t.Cleanup(func() { version, revision, commitTime = "", "", "" })
	var buf bytes.Buffer
	root := newRoot()
	root.SetOut(&buf)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"creditmeter v1.2.3\n", "revision   0123abcd\n", "committed  2026-11-30T12:00:00Z\n", "go         " + runtime.Version() + "\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("version printed\n%s\nwant a line %q", buf.String(), want)
		}
	}
}

func TestEveryCommandHasLogSettings(t *testing.T) {
	for _, c := range newRoot().Commands() {
		for _, f := range []string{"log-level", "log-format"} {
			if c.Flags().Lookup(f) == nil {
				t.Errorf("%s has no --%s", c.Name(), f)
			}
		}
	}
	out, err := run(t, []string{"CREDITMETER_LOG_FORMAT=yaml"}, "version")
	if err == nil || !strings.Contains(out, `setting --log-format (CREDITMETER_LOG_FORMAT): must be text or json, got "yaml"`) {
		t.Errorf("a bad log format must be refused naming the setting: %v\n%s", err, out)
	}
}

// serve logs JSON when told, one access line per request and an audit line
// per write, never the token; /metrics has the build and the HTTP series.
func TestServeLogsAndHTTPMetrics(t *testing.T) {
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	c := testenv.Config(t)
	_, prefix := testenv.Keyspace(t)
	_, cc := testenv.ClickHouse(t)
	const token = "ops-admin-token-0123456789abcdef0123"
	addr, maddr := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	logPath := filepath.Join(t.TempDir(), "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--engine=false", "--http-addr", addr, "--metrics-addr", maddr, "--kafka-brokers", b.Addr(),
		"--redis-addr", c.Redis.Addr, "--redis-key-prefix", prefix, "--clickhouse-addr", cc.Addr, "--clickhouse-database", cc.Database,
		"--admin-tokens", token, "--kafka-session-timeout", "6s")
	cmd.Env = append(os.Environ(), "CREDITMETER_LOG_FORMAT=json")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve exited with %v after SIGTERM", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("serve did not stop within 15s of SIGTERM")
		}
		logFile.Close()
	}
	t.Cleanup(stop)
	base := "http://" + addr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })

	do := func(method, path, tok, body string) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("POST", "/v1/currencies", token, `{"code":"AIT","name":"AI Tokens","symbol":"AIT"}`); code != 201 {
		t.Fatalf("create currency: %d", code)
	}
	if code := do("GET", "/v1/currencies/AIT", "wrong-token", ""); code != 401 {
		t.Fatalf("unknown token: %d", code)
	}

	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`creditmeter_build_info{goversion="` + runtime.Version() + `",revision="`,
		`creditmeter_http_requests_total{code="201",method="POST",route="/v1/currencies"} 1`,
		`creditmeter_http_requests_total{code="401",method="GET",route="/v1/currencies/{code}"} 1`,
		`creditmeter_http_request_duration_seconds_count{route="/v1/currencies"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	stop()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, token) || strings.Contains(line, "wrong-token") {
			t.Errorf("a log line holds a token: %s", line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("--log-format json wrote a line that is not JSON: %q", line)
			continue
		}
		switch {
		case m["msg"] == "http request" && m["route"] == "/v1/currencies" && m["status"] == 201.0 && m["principal"] == "admin":
			seen["access"] = true
		case m["msg"] == "audit" && m["route"] == "POST /v1/currencies" && m["resource"] == "AIT" && m["principal"] == "admin":
			seen["audit"] = true
		case m["msg"] == "http request" && m["status"] == 401.0 && m["principal"] == "none":
			seen["refused"] = true
		}
	}
	for _, k := range []string{"access", "audit", "refused"} {
		if !seen[k] {
			t.Errorf("no %s line in serve's log", k)
		}
	}
}
