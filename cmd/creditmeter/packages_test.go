package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// README's package table names every package of the module, so a newcomer
// finds each one's job there (top-level directories and internal/'s).
func TestReadmeNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, pattern := range []string{"../../*/*.go", "../../internal/*/*.go"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, f := range files {
			dir := strings.TrimPrefix(filepath.Dir(f), "../../")
			if seen[dir] || strings.HasSuffix(f, "_test.go") {
				continue
			}
			seen[dir] = true
			name := filepath.Base(dir)
			if !strings.Contains(string(readme), "`"+dir+"/`") && !strings.Contains(string(readme), "`"+dir+"`") &&
				!(strings.HasPrefix(dir, "internal/") && strings.Contains(string(readme), "`"+name+"`")) {
				missing = append(missing, dir)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("README.md's package table does not name %v", missing)
	}
}
