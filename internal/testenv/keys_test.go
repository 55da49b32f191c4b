package testenv_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Keys lists every key of the pattern, over more than one SCAN page, and
// none of another prefix.
func TestKeysListsThePatternWithScan(t *testing.T) {
	ctx := context.Background()
	rc, pfx := testenv.Keyspace(t)
	other := testenv.KeyspaceOn(t, rc)
	var want []string
	for i := range 2500 {
		k := fmt.Sprintf("%s{s}k%04d", pfx, i)
		want = append(want, k)
		rc.Set(ctx, k, 1, 0)
	}
	rc.Set(ctx, other+"{s}k0000", 1, 0)
	got, err := testenv.Keys(ctx, rc, pfx+"{s}*")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("listed %d keys, want %d", len(got), len(want))
	}
}

// KEYS blocks the Redis every test shares: tests list keys with
// testenv.Keys and clean up with their Keyspace.
func TestNoTestUsesRedisKEYS(t *testing.T) {
	keysCall := regexp.MustCompile(`\.Keys\([^()]*(\([^()]*\))?[^()]*\)\.(Result|Val)\(\)|"(?i:keys)"`)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "keys_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if keysCall.MatchString(line) {
				rel, _ := filepath.Rel(root, p)
				bad = append(bad, fmt.Sprintf("%s:%d: %s", rel, i+1, strings.TrimSpace(line)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("Redis KEYS (use testenv.Keys or the test's Keyspace cleanup):\n%s", strings.Join(bad, "\n"))
	}
}
