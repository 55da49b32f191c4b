package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every command creditmeter's Lua scripts call is in the ACL rule (a script
// runs with the caller's permissions), and the README shows the rule.
func TestRedisACLRuleCoversScriptsAndREADME(t *testing.T) {
	allowed := map[string]bool{}
	for _, c := range RedisACLCommands {
		allowed[c] = true
	}
	call := regexp.MustCompile(`redis\.p?call\(\s*['"]([A-Za-z]+)['"]|\{\s*'([A-Z]+)',\s*K_`)
	var files []string
	for _, glob := range []string{"../../balance/lua/*.lua", "../../lease/*.go", "../../rating/catalogstore/*.go"} {
		m, err := filepath.Glob(glob)
		if err != nil || len(m) == 0 {
			t.Fatalf("%s: %v (%d files)", glob, err, len(m))
		}
		files = append(files, m...)
	}
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(b), -1) {
			c := strings.ToLower(m[1] + m[2])
			seen++
			if !allowed[c] {
				t.Errorf("%s calls %s, which RedisACLCommands lacks", f, strings.ToUpper(c))
			}
		}
	}
	if seen < 50 {
		t.Fatalf("found only %d redis.call sites: the pattern no longer matches the scripts", seen)
	}
	probed := map[string]bool{}
	for _, p := range aclProbe {
		probed[p[0]] = true
		if len(p) > 1 {
			probed[p[0]+"|"+p[1]] = true
		}
	}
	for _, c := range RedisACLCommands {
		switch c {
		case "hello", "auth", "cluster|slots", "cluster|shards", "cluster|info", "command", "script|exists", "unwatch", "discard":
			continue // handshake, cluster mode only, or follow a probed command
		}
		if !probed[c] {
			t.Errorf("CheckRedisACL does not probe %s", c)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "ACL SETUSER creditmeter >PASSWORD " + RedisACLRuleString("creditmeter:"); !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not show the rule:\n%s", want)
	}
}
