package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/bench"
	"github.com/creditmeter/creditmeter/internal/config"
)

func newBenchCmd() *cobra.Command {
	cfg := config.Default()
	var brokers []string // default: a private broker
	o := bench.Options{Progress: true}
	var scenarios string
	var ownBroker bool
	var gc gcSettings
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput, freshness, memory and API latency on the real services, beside their raw limits",
		Long: `bench measures creditmeter on this machine's Redis and ClickHouse and a Kafka
broker, and prints every figure beside the raw limit measured in the same run
(see bench/README.md). It works in an isolated world: a fresh Redis key prefix,
ClickHouse database and topics, with the seed catalog and --customers
customers, all removed at the end (--keep leaves them). Only loopback
addresses are accepted.

Scenarios (--scenarios, in this order):
  e2e        a backlog of --events realistic AI-agent events (Zipf-skewed
             customers, email.sent and llm.call, duplicates at --dup-rate,
             late events at --late-rate) drained by an in-process engine:
             Kafka → decode → rate → Redis → ClickHouse → commit, exactly-once
             and dedupe on; checks exactly-once from the stores afterwards
             (Redis balances, rated_usage FINAL, the ledger against what
             was sent) and reports Redis CPU per event per node (INFO cpu);
             with --redis-min-replicas N a second backlog is drained with
             WAIT, for its cost (--wait-compare=false: only with WAIT)
  memory     Redis bytes per remembered event id and per subscription
  limits     the raw limits alone: kafka-go consume, Redis batched Lua with
             dedupe, ClickHouse batch insert, decode+rate, and the naive
             one-Lua-call-per-event baselines (pipelined and sequential)
  freshness  events produced at --rate (default half the e2e figure) for
             the time of --fresh-for while the engine consumes: produced →
             balance updated, p50/p99/max
  api        GET /v1/subscriptions/{id}/balance and POST .../check latency
             through the real HTTP handler, --api-workers concurrent clients:
             closed loop (saturated), then open loop at --api-rate, idle
             and while the engine drains at half the e2e figure
  long       --long-events at --long-rate with the engine consuming:
             freshness p99 over the whole run, RSS, Go heap and CPU
             per process over time

Without --kafka-brokers, bench starts a private broker (this binary's broker
command) on a free loopback port with its data in a temporary directory, so
the engine's RSS is not mixed with the broker's. Results go to --out:
summary.json, summary.txt and PNG plots.`,
		Example: `  creditmeter bench                                   # every scenario, 1M-event backlog, 10M-event long run
  creditmeter bench --scenarios e2e,limits --events 300000
  creditmeter bench --scenarios e2e --events 200000 --redis-addr 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --redis-min-replicas 1
  creditmeter bench --scenarios freshness,api --rate 40000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The engine runs in this process: the same collector settings as serve's.
			if err := gc.apply(cmd.Flags()); err != nil {
				return err
			}
			for _, s := range strings.Split(scenarios, ",") {
				if s = strings.TrimSpace(s); s != "" {
					o.Scenarios = append(o.Scenarios, s)
				}
			}
			rconn, err := cfg.Redis.Resolve()
			if err != nil {
				return err
			}
			for _, addr := range rconn.Addrs {
				if !loopback(addr) {
					return fmt.Errorf("setting --redis-addr (%s): bench targets loopback only, got %q", config.EnvName("redis-addr"), addr)
				}
			}
			if !loopback(cfg.ClickHouse.Addr) {
				return fmt.Errorf("setting --clickhouse-addr (%s): bench targets loopback only, got %q", config.EnvName("clickhouse-addr"), cfg.ClickHouse.Addr)
			}
			for _, b := range brokers {
				if !loopback(b) {
					return fmt.Errorf("setting --kafka-brokers (%s): bench targets loopback only, got %q", config.EnvName("kafka-brokers"), b)
				}
			}
			if o.Engine.WaitReplicas < 0 || o.Engine.WaitReplicas > 16 {
				return fmt.Errorf("setting --redis-min-replicas: must be between 0 and 16, got %d", o.Engine.WaitReplicas)
			}
			if o.Engine.WaitTimeout < 10*time.Millisecond || o.Engine.WaitTimeout > time.Minute {
				return fmt.Errorf("setting --redis-wait-timeout: must be between 10ms and 1m, got %s", o.Engine.WaitTimeout)
			}
			o.World.Redis, o.World.CHAddr = cfg.Redis, cfg.ClickHouse.Addr
			o.World.CHUser, o.World.CHPassword = cfg.ClickHouse.User, cfg.ClickHouse.Password
			o.World.Brokers = brokers
			k := cfg.Kafka
			k.Brokers = brokers
			if o.World.Kafka, err = k.Conn(); err != nil {
				return err
			}
			if len(brokers) == 0 && (o.World.Kafka.TLS != nil || o.World.Kafka.SASL != nil) {
				return fmt.Errorf("setting --kafka-brokers (%s): --kafka-tls and --kafka-sasl-* need it (the private broker is plaintext)", config.EnvName("kafka-brokers"))
			}
			o.Command = "creditmeter " + strings.Join(os.Args[1:], " ")
			if len(o.World.Brokers) == 0 && ownBroker {
				addr, pid, stop, err := startBroker(cmd.Context(), o.World.Partitions)
				if err != nil {
					return err
				}
				defer stop()
				o.World.Brokers, o.BrokerPID = []string{addr}, pid
			}
			_, err = bench.Run(cmd.Context(), o)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&brokers, "kafka-brokers", nil, "Kafka brokers, host:port, comma-separated (empty: a private broker; topics and groups are per run)")
	fs.StringVar(&scenarios, "scenarios", strings.Join(bench.AllScenarios, ","), "comma-separated scenarios to run: "+strings.Join(bench.AllScenarios, ","))
	fs.IntVar(&o.Events, "events", 1_000_000, "events in the e2e backlog")
	fs.IntVar(&o.World.Customers, "customers", 2000, "customers, one subscription each")
	fs.IntVar(&o.World.Partitions, "topic-partitions", 8, "partitions of the benchmark topics")
	fs.Float64Var(&o.DupRate, "dup-rate", 0.01, "share of sends that repeat a recent event (producer retries)")
	fs.Float64Var(&o.LateRate, "late-rate", 0.005, "share of events timestamped 1-10 minutes in the past")
	fs.IntVar(&o.Engine.BatchSize, "batch-size", config.Default().Engine.BatchSize, "engine batch size (as serve's default)")
	fs.DurationVar(&o.Engine.Linger, "linger", 20*time.Millisecond, "engine batch linger")
	fs.IntVar(&o.Engine.WaitReplicas, "redis-min-replicas", 0, "as serve's: the engine WAITs for this many replicas of every master before committing (0: no WAIT)")
	fs.DurationVar(&o.Engine.WaitTimeout, "redis-wait-timeout", config.Default().Engine.WaitTimeout, "longest WAIT for --redis-min-replicas")
	fs.BoolVar(&o.WaitCompare, "wait-compare", true, "with --redis-min-replicas: the e2e scenario drains a backlog without WAIT, then one with it, and reports the cost")
	fs.IntVar(&o.RawEvents, "raw-events", 200_000, "events per raw-limit measurement")
	fs.IntVar(&o.NaiveSeq, "naive-events", 30_000, "events of the sequential naive baseline")
	fs.Float64Var(&o.Rate, "rate", 0, "freshness run rate in events/s (0: half the e2e throughput)")
	fs.DurationVar(&o.FreshFor, "fresh-for", 30*time.Second, "length of the freshness run")
	fs.IntVar(&o.LongEvents, "long-events", 10_000_000, "events of the long run")
	fs.Float64Var(&o.LongRate, "long-rate", 0, "long run rate in events/s (0: as the freshness run)")
	fs.IntVar(&o.APIWorkers, "api-workers", 32, "concurrent API clients")
	fs.DurationVar(&o.APIFor, "api-for", 10*time.Second, "API measurement per endpoint")
	fs.Float64Var(&o.APIRate, "api-rate", 2000, "open-loop API request rate in req/s, measured after the saturated closed-loop run (0: skip)")
	fs.StringVar(&o.Out, "out", "bench/results", "directory of summary.json, summary.txt and the PNG plots (empty: none)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the e2e drain to this file")
	fs.BoolVar(&o.Progress, "progress", true, "show progress bars on stderr")
	fs.BoolVar(&o.World.Keep, "keep", false, "keep the run's Redis keys, ClickHouse database and topics")
	fs.BoolVar(&ownBroker, "broker-process", true, "without --kafka-brokers: run the private broker as a child process (false: inside this process)")
	cfg.BindKafkaSecurity(fs)
	bindGC(fs, &gc)
	withConfig(cmd, &cfg, config.GroupRedis, config.GroupClickHouse)
	// The archive goes to a database of its own per run.
	_ = fs.MarkHidden("clickhouse-database")
	return cmd
}

func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startBroker runs "creditmeter broker" on a free loopback port with a
// temporary data directory, and waits until it answers.
func startBroker(ctx context.Context, partitions int) (addr string, pid int, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	addr = ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "creditmeter-bench-broker-")
	if err != nil {
		return "", 0, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	if partitions == 0 {
		partitions = 8
	}
	c := exec.Command(self, "broker", "--listen", addr, "--data-dir", dir, "--partitions", strconv.Itoa(partitions))
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, err
	}
	stop = func() {
		_ = c.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", 0, nil, fmt.Errorf("private broker on %s did not start: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, c.Process.Pid, stop, nil
}
