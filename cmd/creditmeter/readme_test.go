package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// readmeExample is a curl command of README.md and the answer it shows.
type readmeExample struct {
	line    int
	command string
	want    string // the "# {...}" line after it
}

// readmeExamples extracts every curl command of the README's sh blocks.
func readmeExamples(t *testing.T, path string) []readmeExample {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeExample
	inSh := false
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "```"):
			inSh = !inSh && strings.TrimSpace(l) == "```sh"
		case inSh && strings.HasPrefix(l, "curl "):
			ex := readmeExample{line: i + 1, command: l}
			// A command goes on after a trailing backslash or inside a quoted body.
			for (strings.HasSuffix(ex.command, "\\") || strings.Count(ex.command, "'")%2 == 1) && i+1 < len(lines) {
				i++
				ex.command += "\n" + lines[i]
			}
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "# ") {
				i++
				ex.want = strings.TrimPrefix(lines[i], "# ")
			}
			out = append(out, ex)
		}
	}
	return out
}

// contains reports whether got has every field of want with its value
// (objects recursively, arrays element by element), so the README shows only
// the fields that do not change from run to run.
func contains(got, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if gv, ok := g[k]; !ok || !contains(gv, v) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !contains(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

// The README's curl examples run, in order, against a real serve (API only,
// on the real Redis, ClickHouse and broker), and answer what it shows.
func TestReadmeCurlExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed to run the README's examples: %v", err)
	}
	examples := readmeExamples(t, "../../README.md")
	if len(examples) < 5 {
		t.Fatalf("found %d curl examples in README.md, want the walkthrough", len(examples))
	}
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	c := testenv.Config(t)
	_, prefix := testenv.Keyspace(t)
	_, cc := testenv.ClickHouse(t)
	const token = "readme-admin-token-0123456789abcdef"
	addr := "127.0.0.1:" + freePort(t)
	start(t, "serve", "--engine=false", "--http-addr", addr, "--kafka-brokers", b.Addr(), "--redis-addr", c.Redis.Addr,
		"--redis-key-prefix", prefix, "--clickhouse-addr", cc.Addr, "--clickhouse-database", cc.Database, "--admin-tokens", token)
	eventually(t, "serve answers /healthz", func() error { return get("http://" + addr + "/healthz") })

	host := regexp.MustCompile(`http://127\.0\.0\.1:8080`)
	for _, ex := range examples {
		if !host.MatchString(ex.command) {
			t.Errorf("README.md:%d: the example does not call http://127.0.0.1:8080", ex.line)
			continue
		}
		cmd := exec.Command("sh", "-c", host.ReplaceAllString(ex.command, "http://"+addr))
		cmd.Env = append(os.Environ(), "ADMIN="+token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("README.md:%d: %v\n%s", ex.line, err, out)
			continue
		}
		if ex.want == "" {
			t.Errorf("README.md:%d: no \"# {...}\" line shows the answer", ex.line)
			continue
		}
		var got, want any
		if err := json.Unmarshal([]byte(ex.want), &want); err != nil {
			t.Errorf("README.md:%d: the answer shown is not JSON: %v", ex.line, err)
			continue
		}
		if err := json.Unmarshal(out, &got); err != nil || !contains(got, want) {
			t.Errorf("README.md:%d: %s\nanswered %s\nthe README shows %s", ex.line, strings.SplitN(ex.command, "\n", 2)[0], out, ex.want)
		}
	}
	fmt.Fprintf(os.Stderr, "ran %d README curl examples\n", len(examples))
}
