package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"

	"github.com/creditmeter/creditmeter/internal/config"
)

// defaultGCPercent is the engine's garbage-collector target. Each batch
// allocates afresh (decoded events, rows, the driver's column buffers) and
// little of it lives past the batch, so the runtime's default of 100
// collects several times per batch: ~25 % of the engine's CPU in a drain's
// profile. 400 lets the heap grow to 5× what is live (tens of MB) and cut
// the engine's CPU per event by 10–15 % (bench/README.md, "GC").
const defaultGCPercent = 400

// gcSettings are the Go runtime's collector settings of a long-running
// command (serve, bench).
type gcSettings struct {
	percent     int
	memLimitMiB int64
}

func bindGC(fs *pflag.FlagSet, g *gcSettings) {
	fs.IntVar(&g.percent, "gc-percent", defaultGCPercent, "Go garbage collector target (as GOGC): heap growth in % of the live heap before a collection; -1 turns the collector off (then set --memory-limit-mib); GOGC in the environment wins over the default")
	fs.Int64Var(&g.memLimitMiB, "memory-limit-mib", 0, "soft limit of the Go heap in MiB (as GOMEMLIMIT): the collector runs more often near it; 0: none")
}

// apply sets the collector. A GOGC in the environment is kept unless the
// flag or its variable names a value.
func (g gcSettings) apply(fs *pflag.FlagSet) error {
	if g.percent < -1 {
		return fmt.Errorf("setting --gc-percent (%s): must be -1 (off) or 0 and above, got %d", config.EnvName("gc-percent"), g.percent)
	}
	if g.memLimitMiB < 0 || g.memLimitMiB > 1<<30 {
		return fmt.Errorf("setting --memory-limit-mib (%s): must be between 0 and %d, got %d", config.EnvName("memory-limit-mib"), 1<<30, g.memLimitMiB)
	}
	_, envSet := os.LookupEnv(config.EnvName("gc-percent"))
	if fs.Changed("gc-percent") || envSet || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(g.percent)
	}
	if g.memLimitMiB > 0 {
		debug.SetMemoryLimit(g.memLimitMiB << 20)
	}
	return nil
}
