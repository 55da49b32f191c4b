package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// KafkaConsumer is the consumer's group membership: how soon a member that
// died without leaving loses its partitions (SessionTimeout), how often it
// tells the coordinator it is alive, and how long a rebalance waits for the
// members to rejoin; and which assignor spreads the partitions. kafka-go
// supports neither cooperative-sticky rebalancing nor static membership
// (group.instance.id) in its Reader, so these timeouts are what bound a
// failover.
type KafkaConsumer struct {
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	RebalanceTimeout  time.Duration
	RebalanceStrategy string // range or round-robin (ingest.RebalanceStrategies)
}

// DefaultKafkaConsumer keeps the timeouts serve has always used.
func DefaultKafkaConsumer() KafkaConsumer {
	return KafkaConsumer{SessionTimeout: 10 * time.Second, HeartbeatInterval: time.Second, RebalanceTimeout: 10 * time.Second,
		RebalanceStrategy: "range"}
}

func (c *Config) bindKafkaConsumer(fs *pflag.FlagSet) {
	k := &c.Kafka.Consumer
	fs.DurationVar(&k.SessionTimeout, "kafka-session-timeout", k.SessionTimeout,
		"a member silent this long loses its partitions to the others (failover time); the broker allows group.min.session.timeout.ms (default 6s) to group.max.session.timeout.ms")
	fs.DurationVar(&k.HeartbeatInterval, "kafka-heartbeat-interval", k.HeartbeatInterval,
		"how often the consumer heartbeats; under --kafka-session-timeout (a third or less is usual)")
	fs.DurationVar(&k.RebalanceTimeout, "kafka-rebalance-timeout", k.RebalanceTimeout,
		"how long a rebalance waits for every member to rejoin")
	fs.StringVar(&k.RebalanceStrategy, "kafka-rebalance-strategy", k.RebalanceStrategy,
		"how the group assigns partitions: range or round-robin (kafka-go rebalances eagerly: no cooperative-sticky)")
}

func (k KafkaConsumer) validate() []error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &SettingError{Flag: flag, Err: fmt.Errorf(format, args...)})
	}
	if k.SessionTimeout < time.Second || k.SessionTimeout > 30*time.Minute {
		bad("kafka-session-timeout", "must be between 1s and 30m, got %s", k.SessionTimeout)
	}
	if k.HeartbeatInterval < 100*time.Millisecond {
		bad("kafka-heartbeat-interval", "must be at least 100ms, got %s", k.HeartbeatInterval)
	} else if k.HeartbeatInterval >= k.SessionTimeout {
		bad("kafka-heartbeat-interval", "must be shorter than --kafka-session-timeout (%s), got %s", k.SessionTimeout, k.HeartbeatInterval)
	}
	if k.RebalanceTimeout < time.Second || k.RebalanceTimeout > 30*time.Minute {
		bad("kafka-rebalance-timeout", "must be between 1s and 30m, got %s", k.RebalanceTimeout)
	}
	switch k.RebalanceStrategy {
	case "range", "round-robin":
	case "cooperative-sticky":
		bad("kafka-rebalance-strategy", "cooperative-sticky is not supported: kafka-go's consumer rebalances eagerly; want range or round-robin")
	default:
		bad("kafka-rebalance-strategy", "want range or round-robin, got %q", k.RebalanceStrategy)
	}
	return errs
}

// Log is how every command logs (to stderr).
type Log struct {
	Level  string // debug, info, warn, error
	Format string // text, json
}

// DefaultLog is info as text.
func DefaultLog() Log { return Log{Level: "info", Format: "text"} }

// BindLog registers --log-level and --log-format; every command has them.
func (c *Config) BindLog(fs *pflag.FlagSet) {
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "least severe log lines written: debug, info, warn or error (access and audit lines are info)")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "log line format: text (key=value) or json (one object a line)")
}

// ValidateLog checks the log settings.
func (c Config) ValidateLog() error {
	var errs []error
	if _, err := c.Log.SlogLevel(); err != nil {
		errs = append(errs, &SettingError{Flag: "log-level", Err: err})
	}
	if f := strings.ToLower(c.Log.Format); f != "text" && f != "json" {
		errs = append(errs, &SettingError{Flag: "log-format", Err: fmt.Errorf("must be text or json, got %q", c.Log.Format)})
	}
	return errors.Join(errs...)
}

// SlogLevel is the level as slog's.
func (l Log) SlogLevel() (slog.Level, error) {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("must be debug, info, warn or error, got %q", l.Level)
}
