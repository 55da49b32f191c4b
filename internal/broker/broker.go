// Package broker runs the embedded development Kafka-protocol broker (franz-go's
// kfake) with its data and committed offsets on disk.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/creditmeter/creditmeter/ingest"
)

// Options configure Start.
type Options struct {
	Listen     string   // host:port on loopback; port 0 picks a free one
	DataDir    string   // required: topics and offsets persist here
	Partitions int      // partitions of topics the broker creates
	Topics     []string // topics created at start when missing
	Logger     *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	Topics  []ingest.TopicStatus
}

// Start starts a single-node broker and makes sure the topics exist.
func Start(ctx context.Context, o Options) (*Broker, error) {
	if o.DataDir == "" {
		return nil, errors.New("broker: DataDir is required")
	}
	if o.Partitions < 1 {
		return nil, fmt.Errorf("broker: Partitions must be >= 1, got %d", o.Partitions)
	}
	_, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker: listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen port %q: %w", portStr, err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	listen := o.Listen
	cluster, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.DataDir(o.DataDir),
		kfake.DefaultNumPartitions(o.Partitions),
		kfake.ClusterID("creditmeter-dev"),
		kfake.WithLogger(slogLogger{logger}),
		// kfake binds 127.0.0.1; honour the host we were given (e.g. ::1).
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, listen) }),
	)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s: %w", o.Listen, err)
	}
	b := &Broker{cluster: cluster, addr: cluster.ListenAddrs()[0]}
	if len(o.Topics) > 0 {
		b.Topics, err = ingest.EnsureTopics(ctx, []string{b.addr}, o.Partitions, o.Topics...)
		if err != nil {
			cluster.Close()
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	return b, nil
}

// Addr is the host:port the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and flushes its state to disk.
func (b *Broker) Close() { b.cluster.Close() }

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var lv slog.Level
	switch level {
	case kfake.LogLevelError:
		lv = slog.LevelError
	case kfake.LogLevelWarn:
		lv = slog.LevelWarn
	case kfake.LogLevelInfo:
		lv = slog.LevelInfo
	default:
		lv = slog.LevelDebug
	}
	if !s.l.Enabled(context.Background(), lv) {
		return
	}
	s.l.Log(context.Background(), lv, fmt.Sprintf(msg, args...), "component", "kfake")
}
