// Package config holds creditmeter's settings: flags with CREDITMETER_*
// environment fallbacks, loopback defaults, and validation whose errors name
// the setting at fault.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/creditmeter/creditmeter/tokens"
)

// EnvPrefix prefixes every environment variable: flag --redis-addr is
// CREDITMETER_REDIS_ADDR.
const EnvPrefix = "CREDITMETER_"

// Config is every setting of the creditmeter binary. Subcommands bind the
// groups they use.
type Config struct {
	Kafka      Kafka
	Redis      Redis
	ClickHouse ClickHouse
	HTTP       HTTP
	Prometheus Prometheus
	Broker     Broker
	Engine     Engine

	Log Log // every command
}

// Engine tunes the hot path of serve.
type Engine struct {
	Enabled      bool
	BatchSize    int
	Linger       time.Duration
	DedupeWindow time.Duration
	GraceWindow  time.Duration
	KeyPrefix    string
	// MaxFutureSkew is how far ahead of now an event may be stamped.
	MaxFutureSkew time.Duration
	// MinReplicas Redis replicas must acknowledge a batch's balance changes
	// (WAIT, within WaitTimeout) before its offsets are committed.
	MinReplicas int
	WaitTimeout time.Duration
	// WebhookSchedule is the wait after each failed webhook attempt;
	// WebhookTimeout bounds one attempt.
	WebhookSchedule []time.Duration
	WebhookTimeout  time.Duration
}

// Kafka is where usage events flow.
type Kafka struct {
	Brokers  []string
	Topic    string
	DLQTopic string
	Group    string
	// Consumer is the group membership's timeouts (ops.go).
	Consumer KafkaConsumer
	// MaxMessageBytes is the broker's limit of a record batch
	// (message.max.bytes): produce batches and dead letters stay under it.
	MaxMessageBytes int
	// TLS to the brokers; verification is on unless TLSInsecureSkipVerify.
	TLS                   bool
	TLSCAFile             string // PEM CAs to trust (default: the system's)
	TLSCertFile           string // PEM client certificate (mutual TLS), with TLSKeyFile
	TLSKeyFile            string
	TLSServerName         string // name to verify (default: the broker's host)
	TLSInsecureSkipVerify bool
	// SASL: plain, scram-sha-256 or scram-sha-512; empty for none.
	SASLMechanism    string
	SASLUsername     string
	SASLPassword     string // secret: never printed
	SASLPasswordFile string // file holding the password (trailing newline ignored)
}

// Redis is the hot balance store.
type Redis struct {
	Addr       string // host:port, a comma-separated list, or a redis:// / rediss:// URL
	Mode       string // standalone, cluster, sentinel; empty: by the number of addresses
	MasterName string // sentinel's master name
	Username   string
	Password   string
	DB         int
	RedisTLS
}

// ClickHouse is the archive, reached over the native protocol.
type ClickHouse struct {
	Addr     string // host:port, or a comma-separated list tried in order
	Database string
	User     string
	Password string
	ClickHouseTLS
	ClickHouseCluster
}

// HTTP is the API listener of serve and its separate /metrics listener.
type HTTP struct {
	Addr        string
	MetricsAddr string
	AdminTokens []string
	// PaymentCallbackSecret signs payment providers' callbacks
	// (POST /v1/payments/callback); empty disables them.
	PaymentCallbackSecret string
}

// MinAdminTokenLen is the shortest admin token serve accepts: an admin token
// opens every customer's data, so it must not be guessable.
const MinAdminTokenLen = 32

// Prometheus is the server that scrapes creditmeter (used by doctor and alert tests).
type Prometheus struct {
	URL string
}

// Broker configures the embedded development Kafka-protocol broker.
type Broker struct {
	Listen     string
	DataDir    string
	Partitions int
	// TLS listener (both files, PEM) and one SASL user, for testing
	// creditmeter's --kafka-tls and --kafka-sasl-* settings.
	TLSCertFile      string
	TLSKeyFile       string
	SASLMechanism    string
	SASLUsername     string
	SASLPassword     string // secret: never printed
	SASLPasswordFile string
}

// Default returns the loopback development defaults.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:  []string{"127.0.0.1:9092"},
			Topic:    "usage-events",
			DLQTopic: "usage-events-dlq",
			Group:    "creditmeter",
			// Under Kafka's default message.max.bytes (1,048,588).
			MaxMessageBytes: 1_000_000,

			Consumer: DefaultKafkaConsumer(),
		},
		Redis:      Redis{Addr: "127.0.0.1:6379"},
		ClickHouse: ClickHouse{Addr: "127.0.0.1:9000", Database: "creditmeter", User: "default"},
		HTTP:       HTTP{Addr: "127.0.0.1:8080", MetricsAddr: "127.0.0.1:9464"},
		Prometheus: Prometheus{URL: "http://127.0.0.1:9090"},
		Broker:     Broker{Listen: "127.0.0.1:9092", DataDir: "creditmeter-broker-data", Partitions: 8},
		Engine: Engine{Enabled: true, BatchSize: 20000, Linger: 20 * time.Millisecond, DedupeWindow: time.Hour,
			GraceWindow: 15 * time.Minute, MaxFutureSkew: 5 * time.Minute, KeyPrefix: "creditmeter:", WaitTimeout: time.Second,
			WebhookSchedule: []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
				// webhook.DefaultSchedule; config imports no domain package
				time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour},
			WebhookTimeout: 10 * time.Second},

		Log: DefaultLog(),
	}
}

// Bounds of --kafka-max-message-bytes: a produce batch must hold the largest
// event (64 KiB) with room (ingest.MinMaxMessageBytes); Kafka's own ceiling
// is a 32-bit size.
const (
	minMaxMessageBytes = 100_000
	maxMaxMessageBytes = 1 << 30
)

// Group names a set of settings a subcommand may bind.
type Group int

// The groups of settings.
const (
	GroupKafka Group = iota
	GroupRedis
	GroupClickHouse
	GroupHTTP
	GroupPrometheus
	GroupBroker
	GroupEngine
)

// Bind registers the flags of the given groups on fs, writing into c.
func (c *Config) Bind(fs *pflag.FlagSet, groups ...Group) {
	for _, g := range groups {
		switch g {
		case GroupKafka:
			fs.StringSliceVar(&c.Kafka.Brokers, "kafka-brokers", c.Kafka.Brokers, "Kafka bootstrap brokers, host:port, comma-separated")
			fs.StringVar(&c.Kafka.Topic, "kafka-topic", c.Kafka.Topic, "topic of usage events")
			fs.StringVar(&c.Kafka.DLQTopic, "kafka-dlq-topic", c.Kafka.DLQTopic, "topic of rejected usage events (dead letters)")
			fs.StringVar(&c.Kafka.Group, "kafka-group", c.Kafka.Group, "consumer group id")
			fs.IntVar(&c.Kafka.MaxMessageBytes, "kafka-max-message-bytes", c.Kafka.MaxMessageBytes,
				"largest record batch the broker accepts (its message.max.bytes); produce batches and dead letters stay under it")

			c.bindKafkaConsumer(fs)
			c.bindKafkaSecurity(fs)
		case GroupRedis:
			fs.StringVar(&c.Redis.Addr, "redis-addr", c.Redis.Addr, "Redis host:port, comma-separated cluster seed nodes or sentinels, or a redis:// / rediss:// URL (user, password, /db, ?addr=host:port&mode=cluster)")
			fs.StringVar(&c.Redis.Mode, "redis-mode", c.Redis.Mode, "standalone, cluster or sentinel (default: standalone for one address, cluster for several)")
			fs.StringVar(&c.Redis.MasterName, "redis-master-name", c.Redis.MasterName, "master name to ask the sentinels for (--redis-mode sentinel)")
			fs.StringVar(&c.Redis.Username, "redis-username", c.Redis.Username, "Redis ACL user (empty for the default user)")
			fs.StringVar(&c.Redis.Password, "redis-password", c.Redis.Password, "Redis password (empty for none)")
			fs.IntVar(&c.Redis.DB, "redis-db", c.Redis.DB, "Redis database number")
			c.Redis.RedisTLS.bind(fs)
		case GroupClickHouse:
			fs.StringVar(&c.ClickHouse.Addr, "clickhouse-addr", c.ClickHouse.Addr, "ClickHouse native-protocol address, host:port, or several comma-separated, tried in order (failover)")
			fs.StringVar(&c.ClickHouse.Database, "clickhouse-database", c.ClickHouse.Database, "ClickHouse database of the archive")
			fs.StringVar(&c.ClickHouse.User, "clickhouse-user", c.ClickHouse.User, "ClickHouse user")
			fs.StringVar(&c.ClickHouse.Password, "clickhouse-password", c.ClickHouse.Password, "ClickHouse password")
			c.ClickHouse.ClickHouseTLS.bind(fs)
			c.ClickHouse.ClickHouseCluster.bind(fs)
		case GroupHTTP:
			fs.StringVar(&c.HTTP.Addr, "http-addr", c.HTTP.Addr, "listen address of the HTTP API and web console, host:port")
			fs.StringVar(&c.HTTP.MetricsAddr, "metrics-addr", c.HTTP.MetricsAddr, "listen address of /metrics for Prometheus, host:port (keep it private: the series name customers and subscriptions)")
			fs.StringVar(&c.HTTP.PaymentCallbackSecret, "payment-callback-secret", "", "shared secret of payment providers' signed callbacks confirming pending top-ups (empty: no callbacks)")
			fs.StringSliceVar(&c.HTTP.AdminTokens, "admin-tokens", c.HTTP.AdminTokens, fmt.Sprintf("bearer tokens with admin rights, comma-separated, each %d+ characters; name:token names one (the actor of its adjustments; unnamed: admin)", MinAdminTokenLen))
		case GroupPrometheus:
			fs.StringVar(&c.Prometheus.URL, "prometheus-url", c.Prometheus.URL, "base URL of the Prometheus server")
		case GroupBroker:
			fs.StringVar(&c.Broker.Listen, "listen", c.Broker.Listen, "listen address of the embedded broker, host:port (loopback only)")
			fs.StringVar(&c.Broker.DataDir, "data-dir", c.Broker.DataDir, "directory where the broker keeps topics and committed offsets")
			fs.IntVar(&c.Broker.Partitions, "partitions", c.Broker.Partitions, "partitions of the topics the broker creates")
			c.bindBrokerSecurity(fs)
		case GroupEngine:
			fs.BoolVar(&c.Engine.Enabled, "engine", c.Engine.Enabled, "consume and rate usage events (false: serve the API only)")
			fs.IntVar(&c.Engine.BatchSize, "batch-size", c.Engine.BatchSize, "most events per engine batch")
			fs.DurationVar(&c.Engine.Linger, "linger", c.Engine.Linger, "longest wait to fill an engine batch")
			fs.DurationVar(&c.Engine.DedupeWindow, "dedupe-window", c.Engine.DedupeWindow, "how long a producer's duplicate event id is recognised (ids are kept 1 to 2 windows)")
			fs.DurationVar(&c.Engine.GraceWindow, "grace-window", c.Engine.GraceWindow, "late events draw from grants eligible at their time if no older than this; expiry waits for it")
			fs.DurationVar(&c.Engine.MaxFutureSkew, "max-future-skew", c.Engine.MaxFutureSkew, "events stamped further ahead of now are rejected (dead letter reason invalid, field timestamp)")
			fs.StringVar(&c.Engine.KeyPrefix, "redis-key-prefix", c.Engine.KeyPrefix, "prefix of every Redis key creditmeter writes")
			fs.IntVar(&c.Engine.MinReplicas, "redis-min-replicas", c.Engine.MinReplicas, "Redis replicas (of every master) that must hold a batch's balance changes before its offsets are committed (WAIT); 0 for none")
			fs.DurationVar(&c.Engine.WaitTimeout, "redis-wait-timeout", c.Engine.WaitTimeout, "longest WAIT for --redis-min-replicas; fewer acknowledgements are retried as backpressure")
			fs.DurationSliceVar(&c.Engine.WebhookSchedule, "webhook-retry-schedule", c.Engine.WebhookSchedule, "wait after each failed webhook delivery attempt, comma-separated; after the last the delivery is failed")
			fs.DurationVar(&c.Engine.WebhookTimeout, "webhook-timeout", c.Engine.WebhookTimeout, "longest wait for a webhook receiver's answer to one attempt")
		}
	}
}

// ApplyEnv sets every flag of fs not given on the command line from its
// CREDITMETER_* variable, if that is set. lookup is os.LookupEnv in production.
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		env := EnvName(f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			// Replace, not append, the default list.
			if err := sv.Replace(splitList(v)); err != nil {
				errs = append(errs, &SettingError{Flag: f.Name, Err: err})
			}
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, &SettingError{Flag: f.Name, Err: fmt.Errorf("cannot parse %q: %w", v, err)})
		}
	})
	return errors.Join(errs...)
}

// LookupEnv is os.LookupEnv, named for callers of ApplyEnv.
var LookupEnv = os.LookupEnv

// envNames names the variables of flags whose plain name would be ambiguous.
var envNames = map[string]string{
	"listen":             EnvPrefix + "BROKER_LISTEN",
	"data-dir":           EnvPrefix + "BROKER_DATA_DIR",
	"partitions":         EnvPrefix + "BROKER_PARTITIONS",
	"tls-cert-file":      EnvPrefix + "BROKER_TLS_CERT_FILE",
	"tls-key-file":       EnvPrefix + "BROKER_TLS_KEY_FILE",
	"sasl-mechanism":     EnvPrefix + "BROKER_SASL_MECHANISM",
	"sasl-username":      EnvPrefix + "BROKER_SASL_USERNAME",
	"sasl-password":      EnvPrefix + "BROKER_SASL_PASSWORD",
	"sasl-password-file": EnvPrefix + "BROKER_SASL_PASSWORD_FILE",
}

// EnvName is the environment variable of a flag.
func EnvName(flag string) string {
	if n, ok := envNames[flag]; ok {
		return n
	}
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// SettingError says which setting is wrong and why.
type SettingError struct {
	Flag string
	Err  error
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("setting --%s (%s): %v", e.Flag, EnvName(e.Flag), e.Err)
}

func (e *SettingError) Unwrap() error { return e.Err }

// Validate checks the settings of the given groups and returns every problem,
// each a *SettingError naming its setting.
func (c Config) Validate(groups ...Group) error {
	var errs []error
	bad := func(flag string, format string, args ...any) {
		errs = append(errs, &SettingError{Flag: flag, Err: fmt.Errorf(format, args...)})
	}
	for _, g := range groups {
		switch g {
		case GroupKafka:
			if len(c.Kafka.Brokers) == 0 {
				bad("kafka-brokers", "at least one broker is required")
			}
			for _, b := range c.Kafka.Brokers {
				if err := checkHostPort(b); err != nil {
					bad("kafka-brokers", "%v", err)
				}
			}
			for flag, v := range map[string]string{"kafka-topic": c.Kafka.Topic, "kafka-dlq-topic": c.Kafka.DLQTopic} {
				if err := checkTopic(v); err != nil {
					bad(flag, "%v", err)
				}
			}
			if c.Kafka.Topic == c.Kafka.DLQTopic && c.Kafka.Topic != "" {
				bad("kafka-dlq-topic", "must differ from --kafka-topic (%q)", c.Kafka.Topic)
			}
			if strings.TrimSpace(c.Kafka.Group) == "" {
				bad("kafka-group", "must not be empty")
			}
			if c.Kafka.MaxMessageBytes < minMaxMessageBytes || c.Kafka.MaxMessageBytes > maxMaxMessageBytes {
				bad("kafka-max-message-bytes", "must be between %d and %d, got %d", minMaxMessageBytes, maxMaxMessageBytes, c.Kafka.MaxMessageBytes)
			}

			errs = append(errs, c.Kafka.Consumer.validate()...)
			if _, err := c.Kafka.Conn(); err != nil {
				errs = append(errs, err)
			}
		case GroupRedis:
			if _, err := c.Redis.Resolve(); err != nil {
				errs = append(errs, err)
			}
		case GroupClickHouse:
			errs = append(errs, c.ClickHouse.validateConn()...)
			if !isIdent(c.ClickHouse.Database) {
				bad("clickhouse-database", "must be letters, digits and underscores, not starting with a digit, got %q", c.ClickHouse.Database)
			}
			if c.ClickHouse.User == "" {
				bad("clickhouse-user", "must not be empty")
			}
		case GroupHTTP:
			if err := checkHostPort(c.HTTP.Addr); err != nil {
				bad("http-addr", "%v", err)
			}
			if err := checkHostPort(c.HTTP.MetricsAddr); err != nil {
				bad("metrics-addr", "%v", err)
			} else if c.HTTP.MetricsAddr == c.HTTP.Addr {
				bad("metrics-addr", "must differ from --http-addr (%s): /metrics is served on its own listener", c.HTTP.Addr)
			}
			for _, t := range c.HTTP.AdminTokens {
				if _, secret := tokens.ParseAdmin(t); len(secret) < MinAdminTokenLen {
					bad("admin-tokens", "each token must be at least %d characters, one has %d", MinAdminTokenLen, len(secret))
				}
			}
		case GroupPrometheus:
			u, err := url.Parse(c.Prometheus.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("prometheus-url", "must be an http(s) URL, got %q", c.Prometheus.URL)
			}
		case GroupEngine:
			if c.Engine.BatchSize < 1 || c.Engine.BatchSize > 100_000 {
				bad("batch-size", "must be between 1 and 100000, got %d", c.Engine.BatchSize)
			}
			if c.Engine.Linger < time.Millisecond || c.Engine.Linger > time.Minute {
				bad("linger", "must be between 1ms and 1m, got %s", c.Engine.Linger)
			}
			if c.Engine.DedupeWindow < time.Second {
				bad("dedupe-window", "must be at least 1s, got %s", c.Engine.DedupeWindow)
			}
			if c.Engine.GraceWindow < 0 {
				bad("grace-window", "must not be negative, got %s", c.Engine.GraceWindow)
			}
			var total time.Duration
			for _, d := range c.Engine.WebhookSchedule {
				if d <= 0 {
					bad("webhook-retry-schedule", "every wait must be positive, got %s", d)
				}
				total += d
			}
			if total >= 6*24*time.Hour {
				bad("webhook-retry-schedule", "must add up to less than 6 days (deliveries are kept 7), got %s", total)
			}
			if c.Engine.WebhookTimeout < 100*time.Millisecond || c.Engine.WebhookTimeout > 5*time.Minute {
				bad("webhook-timeout", "must be between 100ms and 5m, got %s", c.Engine.WebhookTimeout)
			}
			if c.Engine.MaxFutureSkew < time.Second || c.Engine.MaxFutureSkew > 24*time.Hour {
				bad("max-future-skew", "must be between 1s and 24h, got %s", c.Engine.MaxFutureSkew)
			}
			if strings.ContainsAny(c.Engine.KeyPrefix, "{}") {
				bad("redis-key-prefix", "must not contain braces (they are Redis Cluster hash tags), got %q", c.Engine.KeyPrefix)
			}
			if c.Engine.MinReplicas < 0 || c.Engine.MinReplicas > 16 {
				bad("redis-min-replicas", "must be between 0 and 16, got %d", c.Engine.MinReplicas)
			}
			if c.Engine.WaitTimeout < 10*time.Millisecond || c.Engine.WaitTimeout > time.Minute {
				bad("redis-wait-timeout", "must be between 10ms and 1m, got %s", c.Engine.WaitTimeout)
			}
		case GroupBroker:
			if err := checkHostPort(c.Broker.Listen); err != nil {
				bad("listen", "%v", err)
			} else if host, _, _ := net.SplitHostPort(c.Broker.Listen); !isLoopback(host) {
				bad("listen", "the embedded broker listens on loopback only, got host %q", host)
			}
			if strings.TrimSpace(c.Broker.DataDir) == "" {
				bad("data-dir", "must not be empty")
			}
			if c.Broker.Partitions < 1 || c.Broker.Partitions > 1024 {
				bad("partitions", "must be between 1 and 1024, got %d", c.Broker.Partitions)
			}
			if _, _, err := c.Broker.Security(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func checkHostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", v)
	}
	if host == "" {
		return fmt.Errorf("missing host in %q", v)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port must be 1-65535 in %q", v)
	}
	return nil
}

// checkTopic applies Kafka's topic name rules.
func checkTopic(v string) error {
	if v == "" || v == "." || v == ".." || len(v) > 249 {
		return fmt.Errorf("invalid topic name %q", v)
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q has character %q; allowed are letters, digits, '.', '_' and '-'", v, r)
		}
	}
	return nil
}

func isIdent(v string) bool {
	if v == "" || (v[0] >= '0' && v[0] <= '9') {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
