package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestKafkaConsumerTimeouts(t *testing.T) {
	c, err := parse(t, []string{"--kafka-session-timeout", "6s"}, map[string]string{
		"CREDITMETER_KAFKA_HEARTBEAT_INTERVAL": "500ms", "CREDITMETER_KAFKA_REBALANCE_TIMEOUT": "20s",
		"CREDITMETER_KAFKA_REBALANCE_STRATEGY": "round-robin"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (KafkaConsumer{6 * time.Second, 500 * time.Millisecond, 20 * time.Second, "round-robin"}); c.Kafka.Consumer != want {
		t.Errorf("consumer timeouts %+v, want %+v", c.Kafka.Consumer, want)
	}
	if d := Default().Kafka.Consumer; d != (KafkaConsumer{10 * time.Second, time.Second, 10 * time.Second, "range"}) {
		t.Errorf("defaults changed: %+v", d)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kafka-session-timeout", "2s", "--kafka-heartbeat-interval", "2s"}, "setting --kafka-heartbeat-interval (CREDITMETER_KAFKA_HEARTBEAT_INTERVAL): must be shorter than --kafka-session-timeout (2s)"},
		{[]string{"--kafka-session-timeout", "500ms"}, "setting --kafka-session-timeout (CREDITMETER_KAFKA_SESSION_TIMEOUT): must be between 1s and 30m"},
		{[]string{"--kafka-rebalance-timeout", "0s"}, "setting --kafka-rebalance-timeout (CREDITMETER_KAFKA_REBALANCE_TIMEOUT): must be between 1s and 30m"},
		{[]string{"--kafka-rebalance-strategy", "cooperative-sticky"}, "setting --kafka-rebalance-strategy (CREDITMETER_KAFKA_REBALANCE_STRATEGY): cooperative-sticky is not supported"},
		{[]string{"--kafka-rebalance-strategy", "sticky"}, "setting --kafka-rebalance-strategy (CREDITMETER_KAFKA_REBALANCE_STRATEGY): want range or round-robin"},
		{[]string{"--kafka-heartbeat-interval", "10ms"}, "--kafka-heartbeat-interval (CREDITMETER_KAFKA_HEARTBEAT_INTERVAL): must be at least 100ms"},
	} {
		_, err := parse(t, tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestLogSettings(t *testing.T) {
	parseLog := func(args []string, env map[string]string) (Config, error) {
		c := Default()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		c.BindLog(fs)
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			return c, err
		}
		return c, c.ValidateLog()
	}
	c, err := parseLog([]string{"--log-level", "debug"}, map[string]string{"CREDITMETER_LOG_FORMAT": "json", "CREDITMETER_LOG_LEVEL": "error"})
	if err != nil {
		t.Fatal(err)
	}
	if lv, _ := c.Log.SlogLevel(); lv != slog.LevelDebug || c.Log.Format != "json" {
		t.Errorf("log %+v, want debug (flag wins) as json (variable)", c.Log)
	}
	if lv, err := Default().Log.SlogLevel(); err != nil || lv != slog.LevelInfo || Default().Log.Format != "text" {
		t.Errorf("default log %+v", Default().Log)
	}
	_, err = parseLog(nil, map[string]string{"CREDITMETER_LOG_LEVEL": "loud", "CREDITMETER_LOG_FORMAT": "xml"})
	for _, want := range []string{`setting --log-level (CREDITMETER_LOG_LEVEL): must be debug, info, warn or error, got "loud"`,
		`setting --log-format (CREDITMETER_LOG_FORMAT): must be text or json, got "xml"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}
