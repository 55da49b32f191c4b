package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

var all = []Group{GroupKafka, GroupRedis, GroupClickHouse, GroupHTTP, GroupPrometheus, GroupBroker, GroupEngine}

func parse(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	c := Default()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.Bind(fs, all...)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := ApplyEnv(fs, lookup); err != nil {
		return c, err
	}
	return c, c.Validate(all...)
}

func TestDefaultsAreValidLoopback(t *testing.T) {
	c, err := parse(t, nil, nil)
	if err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for name, addr := range map[string]string{"redis": c.Redis.Addr, "clickhouse": c.ClickHouse.Addr, "http": c.HTTP.Addr, "metrics": c.HTTP.MetricsAddr, "broker": c.Broker.Listen, "kafka": c.Kafka.Brokers[0]} {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("%s default %q is not loopback", name, addr)
		}
	}
}

func TestEnvAndFlags(t *testing.T) {
	env := map[string]string{
		"CREDITMETER_REDIS_ADDR":        "127.0.0.1:7000",
		"CREDITMETER_KAFKA_BROKERS":     "127.0.0.1:1, 127.0.0.1:2",
		"CREDITMETER_CLICKHOUSE_ADDR":   "127.0.0.1:9999",
		"CREDITMETER_BROKER_PARTITIONS": "3",
		"CREDITMETER_REDIS_DB":          "2",
	}
	c, err := parse(t, []string{"--clickhouse-addr", "127.0.0.1:9001"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.Addr != "127.0.0.1:7000" {
		t.Errorf("env not applied: redis addr %q", c.Redis.Addr)
	}
	if got := strings.Join(c.Kafka.Brokers, ","); got != "127.0.0.1:1,127.0.0.1:2" {
		t.Errorf("env list must replace the default list, got %q", got)
	}
	if c.ClickHouse.Addr != "127.0.0.1:9001" {
		t.Errorf("flag must win over env, got %q", c.ClickHouse.Addr)
	}
	if c.Broker.Partitions != 3 || c.Redis.DB != 2 {
		t.Errorf("int settings from env: partitions %d, db %d", c.Broker.Partitions, c.Redis.DB)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"bad redis addr", []string{"--redis-addr", "localhost"}, nil, []string{"--redis-addr", "CREDITMETER_REDIS_ADDR", "host:port"}},
		{"bad port", []string{"--clickhouse-addr", "127.0.0.1:70000"}, nil, []string{"--clickhouse-addr", "port"}},
		{"unparsable env int", nil, map[string]string{"CREDITMETER_REDIS_DB": "two"}, []string{"--redis-db", "CREDITMETER_REDIS_DB", `"two"`}},
		{"db range", []string{"--redis-db", "16"}, nil, []string{"--redis-db", "between 0 and 15"}},
		{"no brokers", nil, map[string]string{"CREDITMETER_KAFKA_BROKERS": " , "}, []string{"--kafka-brokers", "at least one"}},
		{"bad topic", []string{"--kafka-topic", "usage events"}, nil, []string{"--kafka-topic", "' '"}},
		{"same topics", []string{"--kafka-dlq-topic", "usage-events"}, nil, []string{"--kafka-dlq-topic", "must differ"}},
		{"max message bytes", nil, map[string]string{"CREDITMETER_KAFKA_MAX_MESSAGE_BYTES": "1000"}, []string{"--kafka-max-message-bytes", "CREDITMETER_KAFKA_MAX_MESSAGE_BYTES", "between 100000"}},
		{"bad database", []string{"--clickhouse-database", "drop table"}, nil, []string{"--clickhouse-database"}},
		{"short admin token", []string{"--admin-tokens", "abc"}, nil, []string{"--admin-tokens", "32 characters"}},
		// 31 characters: was accepted while the floor was 16.
		{"admin token of 31", nil, map[string]string{"CREDITMETER_ADMIN_TOKENS": "0123456789012345678901234567890"}, []string{"--admin-tokens", "CREDITMETER_ADMIN_TOKENS", "32 characters", "has 31"}},
		{"named admin token with a short secret", []string{"--admin-tokens", "alice:0123456789012345678901234567"}, nil, []string{"--admin-tokens", "32 characters", "has 28"}},
		{"bad metrics addr", []string{"--metrics-addr", "9464"}, nil, []string{"--metrics-addr", "CREDITMETER_METRICS_ADDR", "host:port"}},
		{"metrics on the API listener", []string{"--metrics-addr", "127.0.0.1:8080"}, nil, []string{"--metrics-addr", "must differ from --http-addr"}},
		{"prometheus url", []string{"--prometheus-url", "localhost:9090"}, nil, []string{"--prometheus-url", "http(s)"}},
		{"broker off loopback", []string{"--listen", "0.0.0.0:9092"}, nil, []string{"--listen", "CREDITMETER_BROKER_LISTEN", "loopback"}},
		{"partitions", nil, map[string]string{"CREDITMETER_BROKER_PARTITIONS": "0"}, []string{"--partitions", "CREDITMETER_BROKER_PARTITIONS"}},
		{"batch size", []string{"--batch-size", "0"}, nil, []string{"--batch-size", "CREDITMETER_BATCH_SIZE"}},
		{"linger", nil, map[string]string{"CREDITMETER_LINGER": "soon"}, []string{"--linger", `"soon"`}},
		{"dedupe window", []string{"--dedupe-window", "10ms"}, nil, []string{"--dedupe-window", "at least 1s"}},
		{"key prefix", []string{"--redis-key-prefix", "a{b}"}, nil, []string{"--redis-key-prefix", "braces"}},
		{"future skew", nil, map[string]string{"CREDITMETER_MAX_FUTURE_SKEW": "0s"}, []string{"--max-future-skew", "CREDITMETER_MAX_FUTURE_SKEW", "between 1s and 24h"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.args, tc.env)
			if err == nil {
				t.Fatal("want an error, got none")
			}
			var se *SettingError
			if !errors.As(err, &se) {
				t.Errorf("error %v is not a *SettingError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := parse(t, []string{"--redis-addr", "x", "--http-addr", "y"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--redis-addr") || !strings.Contains(err.Error(), "--http-addr") {
		t.Fatalf("want both settings named, got %v", err)
	}
}

func TestValidateOnlyChecksGivenGroups(t *testing.T) {
	c := Default()
	c.Redis.Addr = "nonsense"
	if err := c.Validate(GroupKafka, GroupBroker); err != nil {
		t.Fatalf("redis is not in the groups, got %v", err)
	}
	if err := c.Validate(GroupRedis); err == nil {
		t.Fatal("want redis error")
	}
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"redis-addr":      "CREDITMETER_REDIS_ADDR",
		"kafka-dlq-topic": "CREDITMETER_KAFKA_DLQ_TOPIC",
		"data-dir":        "CREDITMETER_BROKER_DATA_DIR",
	} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}
