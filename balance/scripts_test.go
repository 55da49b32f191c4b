package balance

import (
	"reflect"
	"regexp"
	"strconv"
	"testing"
)

// keyLister is a script's fixed KEYS as a Go type.
type keyLister interface{ list() []string }

// keyIndexes gives each lua tag of k's type the 1-based KEYS index list()
// puts it at: every field is set to its own tag, then list() is read.
func keyIndexes(t *testing.T, k keyLister) map[string]int {
	t.Helper()
	v := reflect.New(reflect.TypeOf(k)).Elem()
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f, sf := v.Field(i), v.Type().Field(i)
			switch {
			case sf.Anonymous:
				fill(f)
			case sf.Tag.Get("lua") != "":
				f.SetString(sf.Tag.Get("lua"))
			default:
				t.Fatalf("%s.%s has no lua tag", v.Type(), sf.Name)
			}
		}
	}
	fill(v)
	out := map[string]int{}
	for i, name := range v.Interface().(keyLister).list() {
		if _, dup := out[name]; dup || name == "" {
			t.Fatalf("%T.list() gives %q twice or empty", k, name)
		}
		out[name] = i + 1
	}
	return out
}

var (
	keyDef    = regexp.MustCompile(`(?m)^local (K_[A-Z_]+) = KEYS\[(\d+)\]$`)
	keyUse    = regexp.MustCompile(`\bK_[A-Z_]+\b`)
	keysIndex = regexp.MustCompile(`KEYS\[\d+\]`)
	fromDef   = regexp.MustCompile(`(?m)^local ([A-Z_]+_KEYS_FROM) = (\d+)$`)
)

// Every K_ name a script uses is defined once as KEYS[n], with n the index
// the script's Go key type gives it; KEYS is indexed by number nowhere
// else; the variable tails (journals, dedupe sets) start right after the
// fixed keys.
func TestScriptKeyNames(t *testing.T) {
	sub := subKeys{}
	app := applyKeys{}
	scripts := map[string]struct {
		keys keyLister
		from map[string]int // *_KEYS_FROM constants the script must define
	}{
		"apply.lua":   {app, map[string]int{"DEDUPE_KEYS_FROM": len(app.list()) + 1}},
		"repair.lua":  {sub, map[string]int{"JOURNAL_KEYS_FROM": len(sub.list()) + 1}},
		"change.lua":  {sub, nil},
		"topup.lua":   {topUpKeys{}, nil},
		"open.lua":    {sub, nil},
		"expire.lua":  {sub, nil},
		"restore.lua": {sub, nil},
	}
	if len(sub.list()) != subKeyCount {
		t.Fatalf("subKeyCount %d, list() has %d", subKeyCount, len(sub.list()))
	}
	for name := range sources {
		if _, ok := scripts[name]; !ok {
			t.Errorf("script %s has no key type in this test", name)
		}
	}
	for name, sc := range scripts {
		src, ok := sources[name]
		if !ok {
			t.Errorf("no script %s", name)
			continue
		}
		want := keyIndexes(t, sc.keys)
		defs := map[string]int{}
		for _, m := range keyDef.FindAllStringSubmatch(src, -1) {
			if _, dup := defs[m[1]]; dup {
				t.Errorf("%s: %s defined twice", name, m[1])
			}
			defs[m[1]], _ = strconv.Atoi(m[2])
		}
		if n := len(keysIndex.FindAllString(src, -1)); n != len(defs) {
			t.Errorf("%s: KEYS indexed by number %d times, %d of them K_ definitions", name, n, len(defs))
		}
		used := map[string]bool{}
		for _, k := range keyUse.FindAllString(src, -1) {
			if used[k] {
				continue
			}
			used[k] = true
			switch idx, ok := defs[k]; {
			case !ok:
				t.Errorf("%s uses %s, which it does not define", name, k)
			case want[k] != idx:
				t.Errorf("%s: %s = KEYS[%d], the Go key type puts it at %d", name, k, idx, want[k])
			}
		}
		for k, idx := range want {
			if _, ok := defs[k]; !ok {
				t.Errorf("%s: the Go key type passes %s (KEYS[%d]) but the script does not name it", name, k, idx)
			}
		}
		got := map[string]int{}
		for _, m := range fromDef.FindAllStringSubmatch(src, -1) {
			got[m[1]], _ = strconv.Atoi(m[2])
		}
		if !reflect.DeepEqual(got, sc.from) && (len(got) > 0 || len(sc.from) > 0) {
			t.Errorf("%s: KEYS tails start at %v, want %v", name, got, sc.from)
		}
	}
}

// dedupe.lua and dedupe.go compute the same first level of a time bucket.
func TestDedupeConstantsAgree(t *testing.T) {
	src := sources["apply.lua"]
	for name, want := range map[string]int{"DEDUPE_MAX_LEVEL": ddMaxLevel, "DEDUPE_TARGET": ddTarget} {
		m := regexp.MustCompile(`(?m)^local ` + name + ` = (\d+)`).FindStringSubmatch(src)
		if m == nil || m[1] != strconv.Itoa(want) {
			t.Errorf("dedupe.lua %s = %v, Go has %d", name, m, want)
		}
	}
}
