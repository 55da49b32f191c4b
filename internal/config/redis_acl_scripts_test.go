package config

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every command a Lua script of creditmeter calls is in the ACL rule: a
// script's commands are checked against the caller's ACL, and a script
// added later would otherwise fail with NOPERM only under the rule.
func TestACLRuleCoversEveryScriptCommand(t *testing.T) {
	call := regexp.MustCompile(`redis\.p?call\(\s*['"]([A-Za-z]+)['"]`)
	var files []string
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "../.." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".lua") || (strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		if strings.Contains(f, "/bench/") { // the bench's own baselines run as the operator
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(b), -1) {
			seen++
			if c := strings.ToLower(m[1]); !slices.Contains(RedisACLCommands, c) {
				t.Errorf("%s calls %s, which RedisACLCommands (and README's rule) lack", f, c)
			}
		}
	}
	if seen < 50 {
		t.Fatalf("found only %d redis.call sites: is the walk wrong?", seen)
	}
}
