package engine

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/ingest"
)

// Metrics are the engine's Prometheus series. Labels are bounded: stage and
// DLQ reason are fixed sets, partition is bounded by the topic's partitions.
type Metrics struct {
	Consumed     prometheus.Counter
	Rated        prometheus.Counter
	Applied      prometheus.Counter
	Duplicates   *prometheus.CounterVec // kind: offset (redelivery) | id (sent twice)
	DeadLetters  *prometheus.CounterVec // reason
	BatchSize    prometheus.Histogram
	BatchSeconds prometheus.Histogram
	StageSeconds *prometheus.HistogramVec // stage: rate, balance, archive, dlq, commit
	Retries      *prometheus.CounterVec   // stage
	Backpressure prometheus.Gauge
	Freshness    prometheus.Histogram // Kafka append time → balance updated
	Lag          *prometheus.GaugeVec // partition
	LowCrossings *prometheus.CounterVec
	DLQDropped   *prometheus.CounterVec // reason
	// Redis durability: subscriptions repaired after Redis lost writes,
	// and ledger entries the archive refused for reusing a sequence number.
	Repairs         prometheus.Counter
	LedgerConflicts prometheus.Counter

	lagMu    sync.Mutex
	lagParts map[int]bool // partitions with a Lag series
}

// NewMetrics registers the engine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Consumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "creditmeter_events_consumed_total",
			Help: "Usage events read from Kafka."}),
		Rated: prometheus.NewCounter(prometheus.CounterOpts{Name: "creditmeter_lines_rated_total",
			Help: "Rated lines (an event matching several meters makes several)."}),
		Applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "creditmeter_events_applied_total",
			Help: "Usage events whose credits were drawn from a balance for the first time."}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_events_duplicate_total",
			Help: "Usage events that changed nothing because they were applied before: kind=offset (Kafka redelivery) or id (sent twice)."}, []string{"kind"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_events_dlq_total",
			Help: "Usage events sent to the dead-letter topic, by reason."}, []string{"reason"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "creditmeter_batch_events",
			Help: "Events per processed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		BatchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "creditmeter_batch_seconds",
			Help: "Time to process a batch, fetch to commit.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		StageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "creditmeter_stage_seconds",
			Help: "Time of one attempt of a pipeline stage.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"stage"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_retries_total",
			Help: "Failed attempts of a stage that were retried (Redis, ClickHouse or Kafka unavailable)."}, []string{"stage"}),
		Backpressure: prometheus.NewGauge(prometheus.GaugeOpts{Name: "creditmeter_backpressure",
			Help: "1 while the engine has stopped consuming because a service fails, else 0."}),
		Freshness: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "creditmeter_freshness_seconds",
			Help: "From the event's append to Kafka to its balance change.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "creditmeter_consumer_lag",
			Help: "Messages behind the end of the partition, for each partition assigned to this member: as of the last batch, and from the group's committed offset every few seconds."}, []string{"partition"}),
		LowCrossings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_low_balance_crossings_total",
			Help: "Balances crossing their low-balance threshold: direction=down|up."}, []string{"direction"}),
		Repairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "creditmeter_balance_repairs_total",
			Help: "Subscriptions whose Redis state lost acknowledged writes, repaired from the archive."}),
		LedgerConflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "creditmeter_ledger_conflicts_total",
			Help: "Ledger entries the archive refused because an archived entry has their sequence number (Redis lost writes)."}),
		DLQDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_dlq_dropped_total",
			Help: "Dead letters the broker refused for good even without their value: logged and skipped, by reason."}, []string{"reason"}),
		lagParts: map[int]bool{},
	}
	reg.MustRegister(m.Consumed, m.Rated, m.Applied, m.Duplicates, m.DeadLetters, m.BatchSize, m.BatchSeconds,
		m.StageSeconds, m.Retries, m.Backpressure, m.Freshness, m.Lag, m.LowCrossings, m.Repairs, m.LedgerConflicts, m.DLQDropped)
	for _, k := range []string{"offset", "id"} {
		m.Duplicates.WithLabelValues(k)
	}
	for _, r := range []string{ingest.ReasonMalformed, ingest.ReasonInvalid, ingest.ReasonUnknownCust, ingest.ReasonNoSubscription,
		ingest.ReasonUnratable, ReasonNoAccount} {
		m.DeadLetters.WithLabelValues(r)
		m.DLQDropped.WithLabelValues(r)
	}
	return m
}

// DeadLetterDropped counts a dead letter skipped because the broker refused
// it for good (ingest.OnDeadLetterDropped).
func (m *Metrics) DeadLetterDropped(d ingest.DeadLetter, _ error) {
	m.DLQDropped.WithLabelValues(d.Reason).Inc()
}

// setAssignedLag exports the lag of exactly the partitions assigned to this
// member: a partition handed to another member loses its series here, so
// summing over members counts each partition once.
func (m *Metrics) setAssignedLag(lags map[int]int64) {
	m.lagMu.Lock()
	defer m.lagMu.Unlock()
	for p := range m.lagParts {
		if _, ok := lags[p]; !ok {
			m.Lag.DeleteLabelValues(strconv.Itoa(p))
			delete(m.lagParts, p)
		}
	}
	for p, n := range lags {
		m.Lag.WithLabelValues(strconv.Itoa(p)).Set(float64(n))
		m.lagParts[p] = true
	}
}

func (m *Metrics) setBackpressure(on bool) {
	if on {
		m.Backpressure.Set(1)
	} else {
		m.Backpressure.Set(0)
	}
}

func (m *Metrics) observeBatch(msgs []kafka.Message, dead []ingest.DeadLetter, c rowCounts, start, rated time.Time,
	results []balance.BatchResult, done time.Time) {
	m.Consumed.Add(float64(len(msgs)))
	m.Rated.Add(float64(c.rated))
	m.Applied.Add(float64(c.applied))
	m.Duplicates.WithLabelValues("offset").Add(float64(c.dupOffset))
	m.Duplicates.WithLabelValues("id").Add(float64(c.dupID))
	for _, d := range dead {
		m.DeadLetters.WithLabelValues(d.Reason).Inc()
	}
	m.BatchSize.Observe(float64(len(msgs)))
	m.BatchSeconds.Observe(done.Sub(start).Seconds())
	m.StageSeconds.WithLabelValues("rate").Observe(rated.Sub(start).Seconds())
	// last[p] is 1 + the index of partition p's last message: no map and no
	// copy of a (large) message per event.
	var last []int
	for i := range msgs {
		if !msgs[i].Time.IsZero() {
			m.Freshness.Observe(done.Sub(msgs[i].Time).Seconds())
		}
		p := msgs[i].Partition
		for p >= len(last) {
			last = append(last, 0)
		}
		last[p] = i + 1
	}
	m.lagMu.Lock()
	for p, i := range last {
		if i > 0 {
			msg := &msgs[i-1]
			m.Lag.WithLabelValues(strconv.Itoa(p)).Set(float64(max(msg.HighWaterMark-msg.Offset-1, 0)))
			m.lagParts[p] = true
		}
	}
	m.lagMu.Unlock()
	for _, r := range results {
		switch r.Crossing {
		case balance.WentLow:
			m.LowCrossings.WithLabelValues("down").Inc()
		case balance.WentOK:
			m.LowCrossings.WithLabelValues("up").Inc()
		}
	}
}
