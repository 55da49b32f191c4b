package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// gcPercent reads the collector's target without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestGCSettings(t *testing.T) {
	for _, name := range []string{"serve", "bench"} {
		cmd := newServeCmd()
		if name == "bench" {
			cmd = newBenchCmd()
		}
		f := cmd.Flags().Lookup("gc-percent")
		if f == nil || f.DefValue != "400" {
			t.Fatalf("%s: --gc-percent flag %+v, want default 400", name, f)
		}
		if !strings.Contains(f.Usage, "$CREDITMETER_GC_PERCENT") || cmd.Flags().Lookup("memory-limit-mib") == nil {
			t.Errorf("%s: GC flags lack their variable or the memory limit: %q", name, f.Usage)
		}
	}
	defer debug.SetGCPercent(gcPercent())
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	parse := func(args ...string) (*pflag.FlagSet, gcSettings) {
		var g gcSettings
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		bindGC(fs, &g)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return fs, g
	}
	t.Setenv("GOGC", "")
	debug.SetGCPercent(100)
	fs, g := parse()
	if err := g.apply(fs); err != nil || gcPercent() != 400 {
		t.Errorf("default: GC percent %d (err %v), want 400", gcPercent(), err)
	}
	fs, g = parse("--gc-percent", "250", "--memory-limit-mib", "512")
	if err := g.apply(fs); err != nil || gcPercent() != 250 || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Errorf("--gc-percent 250 --memory-limit-mib 512: GC percent %d, limit %d (err %v)", gcPercent(), debug.SetMemoryLimit(-1), err)
	}
	// GOGC in the environment is the operator's choice: the default keeps it.
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	fs, g = parse()
	if err := g.apply(fs); err != nil || gcPercent() != 150 {
		t.Errorf("GOGC=150 and no flag: GC percent %d (err %v), want 150 kept", gcPercent(), err)
	}
	t.Setenv("CREDITMETER_GC_PERCENT", "300")
	fs, g = parse("--gc-percent", "300")
	if err := g.apply(fs); err != nil || gcPercent() != 300 {
		t.Errorf("GOGC=150 and --gc-percent 300: GC percent %d (err %v), want 300", gcPercent(), err)
	}
	fs, g = parse("--gc-percent", "-5")
	if err := g.apply(fs); err == nil || !strings.Contains(err.Error(), "--gc-percent (CREDITMETER_GC_PERCENT)") {
		t.Errorf("--gc-percent -5: %v, want an error naming the setting", err)
	}
}
