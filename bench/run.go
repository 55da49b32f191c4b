package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/creditmeter/creditmeter/internal/config"
)

// Scenario names, in the order they run.
const (
	ScenarioE2E       = "e2e"       // 1: max sustained end-to-end throughput
	ScenarioMemory    = "memory"    // 4a: Redis memory per remembered id and per subscription
	ScenarioLimits    = "limits"    // 3: raw limits and the naive baseline
	ScenarioFreshness = "freshness" // 2: freshness at 50% of max
	ScenarioAPI       = "api"       // 5: balance and check latency
	ScenarioLong      = "long"      // 4b: engine RSS over a long run
)

// AllScenarios in running order.
var AllScenarios = []string{ScenarioE2E, ScenarioMemory, ScenarioLimits, ScenarioFreshness, ScenarioAPI, ScenarioLong}

// Options configure Run.
type Options struct {
	World      WorldConfig
	Engine     EngineConfig
	Scenarios  []string
	Events     int           // scenario 1 backlog
	DupRate    float64       // duplicate sends
	LateRate   float64       // late events
	RawEvents  int           // events per raw-limit measurement
	NaiveSeq   int           // events of the sequential naive baseline
	Rate       float64       // freshness rate, events/s; 0: half the measured maximum
	FreshFor   time.Duration // freshness run length
	LongEvents int           // events of the long run
	LongRate   float64       // long run rate; 0: as the freshness run
	APIWorkers int
	APIFor     time.Duration
	APIRate    float64 // open-loop request rate; 0: closed loop only
	Out        string  // results directory; "" writes nothing
	Progress   bool
	CPUProfile string // CPU profile of scenario 1's drain
	BrokerPID  int    // pid of an external broker process, for its RSS
	Command    string // the command line, for the report
	Stdout     io.Writer
	// WaitCompare: with Engine.WaitReplicas > 0, scenario 1 first drains a
	// backlog without WAIT, then one of the same size with it (E2EWait).
	WaitCompare bool

	// crashFirst > 0: before the measured drain, an engine that never
	// commits drains at least this many events and stops (a crash between
	// the writes and the commit), so the measured engine replays them.
	crashFirst int
}

func (o *Options) defaults() {
	if o.World.Partitions == 0 {
		o.World.Partitions = 8
	}
	if o.World.Customers == 0 {
		o.World.Customers = 2000
	}
	if o.Events == 0 {
		o.Events = 1_000_000
	}
	if o.RawEvents == 0 {
		o.RawEvents = 200_000
	}
	if o.NaiveSeq == 0 {
		o.NaiveSeq = 30_000
	}
	if o.FreshFor == 0 {
		o.FreshFor = 30 * time.Second
	}
	if o.APIWorkers == 0 {
		o.APIWorkers = 32
	}
	if o.APIFor == 0 {
		o.APIFor = 10 * time.Second
	}
	if o.Engine.BatchSize == 0 {
		o.Engine.BatchSize = config.Default().Engine.BatchSize
	}
	if o.Engine.WaitTimeout == 0 {
		o.Engine.WaitTimeout = config.Default().Engine.WaitTimeout
	}
	if o.Engine.Linger == 0 {
		o.Engine.Linger = 20 * time.Millisecond
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
}

// Report is everything one run measured (written as summary.json).
type Report struct {
	Started    time.Time      `json:"started"`
	Command    string         `json:"command"`
	Host       Host           `json:"host"`
	Config     map[string]any `json:"config"`
	E2E        *E2EResult     `json:"e2e,omitempty"`
	E2EWait    *E2EResult     `json:"e2e_wait,omitempty"` // the same drain with WAIT (--redis-min-replicas), after E2E
	Memory     *MemoryResult  `json:"memory,omitempty"`
	Limits     *LimitsResult  `json:"limits,omitempty"`
	Freshness  *SteadyResult  `json:"freshness,omitempty"`
	API        *APIResult     `json:"api,omitempty"`
	Long       *SteadyResult  `json:"long,omitempty"`
	Targets    []Target       `json:"targets"`
	LoadBefore string         `json:"load_before"`
	LoadAfter  string         `json:"load_after"`
	Took       float64        `json:"took_s"`
}

// Host describes the machine.
type Host struct {
	CPUs       int    `json:"cpus"`
	GoVersion  string `json:"go"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

// Target is one goal of SPEC §8 and whether this run met it.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

func (o *Options) has(s string) bool { return slices.Contains(o.Scenarios, s) }

func (o *Options) bar(total int64, desc string) *progressbar.ProgressBar {
	if !o.Progress {
		return progressbar.DefaultSilent(total, desc)
	}
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }))
}

func (o *Options) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// Run provisions a world, runs the chosen scenarios in order, prints the
// results table and writes the results under o.Out.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	for _, s := range o.Scenarios {
		if !slices.Contains(AllScenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (want some of %s)", s, strings.Join(AllScenarios, ","))
		}
	}
	rep := &Report{Started: time.Now().UTC(), Command: o.Command, LoadBefore: loadAvg(),
		Host: Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0)},
		Config: map[string]any{"events": o.Events, "partitions": o.World.Partitions, "customers": o.World.Customers,
			"batch_size": o.Engine.BatchSize, "linger": o.Engine.Linger.String(),
			"redis_min_replicas": o.Engine.WaitReplicas, "redis_wait_timeout": o.Engine.WaitTimeout.String(), "wait_compare": o.WaitCompare, "dup_rate": o.DupRate, "late_rate": o.LateRate,
			"raw_events": o.RawEvents, "fresh_for": o.FreshFor.String(), "long_events": o.LongEvents,
			"api_workers": o.APIWorkers, "api_rate": o.APIRate, "api_for": o.APIFor.String(), "scenarios": o.Scenarios}}
	o.logf("provisioning %d customers (load %s)", o.World.Customers, rep.LoadBefore)
	w, err := NewWorld(ctx, o.World)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	o.logf("world %s: Redis prefix %s, ClickHouse database %s, brokers %v", w.Run, w.Prefix, w.CC.Database, w.Brokers)

	var errs []error
	step := func(name string, f func() error) {
		if ctx.Err() != nil || !o.has(name) {
			return
		}
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			o.logf("%s failed: %v", name, err)
		}
	}
	var e2eTopic string
	step(ScenarioE2E, func() (err error) {
		ec := o.Engine
		if ec.WaitReplicas > 0 && o.WaitCompare {
			ec.WaitReplicas = 0
		}
		var start func() error
		var stop func()
		if o.CPUProfile != "" {
			f, err := os.Create(o.CPUProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			start, stop = func() error { return pprof.StartCPUProfile(f) }, pprof.StopCPUProfile
		}
		if rep.E2E, e2eTopic, err = runE2E(ctx, &o, w, "e2e", 1, ec, start, stop); err != nil || ec.WaitReplicas == o.Engine.WaitReplicas {
			return err
		}
		rep.E2EWait, _, err = runE2E(ctx, &o, w, "e2e-wait", 2, o.Engine, nil, nil)
		return err
	})
	step(ScenarioMemory, func() (err error) {
		var ids int64 // remembered ids: the unique events of every drain
		for _, u := range w.Want {
			ids += u.Events
		}
		rep.Memory, err = runMemory(ctx, w, ids, rep.E2E)
		return err
	})
	step(ScenarioLimits, func() (err error) {
		rep.Limits, err = runLimits(ctx, &o, w, e2eTopic)
		return err
	})
	rate := o.Rate
	if rate == 0 && rep.E2E != nil {
		rate = rep.E2E.EventsPerSec / 2
	}
	step(ScenarioFreshness, func() (err error) {
		if rate <= 0 {
			return errors.New("no rate: run e2e first or give --rate")
		}
		rep.Freshness, err = runSteady(ctx, &o, w, "freshness", rate, int(rate*o.FreshFor.Seconds()), nil)
		return err
	})
	step(ScenarioAPI, func() (err error) {
		rep.API, err = runAPI(ctx, &o, w, rate)
		return err
	})
	step(ScenarioLong, func() (err error) {
		r := o.LongRate
		if r == 0 {
			r = rate
		}
		if r <= 0 {
			return errors.New("no rate: run e2e first or give --long-rate")
		}
		n := o.LongEvents
		if n == 0 {
			n = 10_000_000
		}
		rep.Long, err = runSteady(ctx, &o, w, "long", r, n, nil)
		return err
	})
	rep.LoadAfter = loadAvg()
	rep.Took = time.Since(rep.Started).Seconds()
	rep.Targets = targets(rep)
	printReport(o.Stdout, rep)
	if o.Out != "" {
		if err := writeResults(o.Out, rep); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}
