package bench

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// Limit is one raw limit: events (or rows) per second of one part alone.
type Limit struct {
	Name    string  `json:"name"`
	What    string  `json:"what"`
	Events  int64   `json:"events"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_s"`
}

// LimitsResult is scenario 3: each part of the hot path alone, on the same
// machine in the same run, and the naive baselines.
type LimitsResult struct {
	Consume    Limit `json:"kafka_consume"`
	DecodeRate Limit `json:"decode_rate"`
	LuaBatched Limit `json:"redis_lua_batched"`
	CHInsert   Limit `json:"clickhouse_insert"`
	NaivePipe  Limit `json:"naive_pipelined"`
	NaiveSeq   Limit `json:"naive_sequential"`
	// The true raw limits: the least Redis and ClickHouse work the job
	// needs (rawfloor.go), not creditmeter's own script and rows.
	RedisMinimal     Limit `json:"redis_minimal"`
	ClickHouseNarrow Limit `json:"clickhouse_narrow"`
	// Slowest is the slowest of the true raw limits: consume, decode+rate,
	// minimal Redis work, narrow ClickHouse insert.
	Slowest Limit `json:"slowest"`
	// LuaEventsPerCall: average events per Lua call in the batched run.
	LuaEventsPerCall float64 `json:"lua_events_per_call"`
}

// All lists the limits in table order.
func (l *LimitsResult) All() []Limit {
	return []Limit{l.Consume, l.DecodeRate, l.RedisMinimal, l.ClickHouseNarrow, l.LuaBatched, l.CHInsert, l.NaivePipe, l.NaiveSeq}
}

func limit(name, what string, n int64, d time.Duration) Limit {
	return Limit{Name: name, What: what, Events: n, Seconds: d.Seconds(), PerSec: float64(n) / d.Seconds()}
}

// rawSet is a generated stream decoded and rated as the engine would, laid
// out on partitions by the producer's hash, in engine-sized chunks.
type rawSet struct {
	msgs   []kafka.Message
	events []rating.Event
	lines  []rating.Line // one per event (each event matches one meter)
	part   []int
	offset []int64
}

func buildRaw(ctx context.Context, w *World, o *Options, tag string, n int) (*rawSet, time.Duration, error) {
	g := NewGen(GenConfig{Customers: w.Custs, Seed: 7, Tag: w.Run + tag})
	rs := &rawSet{msgs: make([]kafka.Message, 0, n)}
	now := time.Now()
	for len(rs.msgs) < n {
		rs.msgs = g.Next(rs.msgs, now)
	}
	rater, err := w.Rater(ctx)
	if err != nil {
		return nil, 0, err
	}
	rs.events = make([]rating.Event, n)
	rs.lines = make([]rating.Line, 0, n)
	rs.part = make([]int, n)
	rs.offset = make([]int64, n)
	parts := make([]int, o.World.Partitions)
	for i := range parts {
		parts[i] = i
	}
	next := make([]int64, len(parts))
	h := ingest.Balancer() // the partitions serve's producers pick
	start := time.Now()
	for i := range rs.msgs {
		if err := ingest.Decode(rs.msgs[i].Value, &rs.events[i]); err != nil {
			return nil, 0, err
		}
		before := len(rs.lines)
		if rs.lines, err = rater.Rate(&rs.events[i], rs.lines); err != nil {
			return nil, 0, err
		}
		if len(rs.lines) != before+1 {
			return nil, 0, fmt.Errorf("event %d rated into %d lines, want 1", i, len(rs.lines)-before)
		}
	}
	took := time.Since(start)
	for i := range rs.msgs {
		p := h.Balance(rs.msgs[i], parts...)
		rs.part[i], rs.offset[i] = p, next[p]
		next[p]++
	}
	// A consumer fetches partition by partition: order the set so, and an
	// engine-sized chunk holds the customers of one or two partitions, as
	// the engine's batches do (see events per call in the e2e figures).
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	sort.SliceStable(perm, func(a, b int) bool { return rs.part[perm[a]] < rs.part[perm[b]] })
	msgs, events, lines := make([]kafka.Message, n), make([]rating.Event, n), make([]rating.Line, n)
	part, offset := make([]int, n), make([]int64, n)
	for j, i := range perm {
		msgs[j], events[j], lines[j], part[j], offset[j] = rs.msgs[i], rs.events[i], rs.lines[i], rs.part[i], rs.offset[i]
	}
	rs.msgs, rs.events, rs.lines, rs.part, rs.offset = msgs, events, lines, part, offset
	return rs, took, nil
}

// batches groups chunk [lo, hi) by (subscription, partition) as
// engine.Process does; one line per batch when single.
func (rs *rawSet) batches(lo, hi int, topic string, single bool) []balance.Batch {
	type key struct {
		sub  string
		part int
	}
	idx := map[key]int{}
	var out []balance.Batch
	for i := lo; i < hi; i++ {
		l := &rs.lines[i]
		line := balance.Line{EventID: rs.events[i].ID, Offset: rs.offset[i], Time: rs.events[i].Timestamp, Credits: l.Credits}
		if single {
			out = append(out, balance.Batch{Subscription: l.SubscriptionID, Topic: topic, Partition: int32(rs.part[i]),
				Committed: rs.offset[i], Lines: []balance.Line{line}})
			continue
		}
		k := key{l.SubscriptionID, rs.part[i]}
		bi, ok := idx[k]
		if !ok {
			bi = len(out)
			idx[k] = bi
			out = append(out, balance.Batch{Subscription: k.sub, Topic: topic, Partition: int32(k.part), Committed: rs.offset[i]})
		}
		out[bi].Lines = append(out[bi].Lines, line)
	}
	return out
}

func (rs *rawSet) rows(lo, hi int, now time.Time) []archive.RatedRow {
	rows := make([]archive.RatedRow, 0, hi-lo)
	for i := lo; i < hi; i++ {
		l, ev := &rs.lines[i], &rs.events[i]
		rows = append(rows, archive.RatedRow{EventID: ev.ID, CustomerID: l.CustomerID, SubscriptionID: l.SubscriptionID,
			Feature: l.FeatureID, EventName: ev.Name, Quantity: l.Quantity.Decimal(), Credits: l.Credits, Funded: l.Credits,
			CreditCurrency: l.CreditCurrency, MoneyValue: l.Money.Decimal(), MoneyCurrency: l.MoneyCurrency,
			EventTime: ev.Timestamp, RatedAt: now, GrantIDs: []string{"g1"}, GrantAmounts: []credit.Amount{l.Credits},
			Status: archive.StatusApplied, Topic: "raw", Partition: int32(rs.part[i]), Offset: rs.offset[i]})
	}
	return rows
}

func runLimits(ctx context.Context, o *Options, w *World, e2eTopic string) (*LimitsResult, error) {
	res := &LimitsResult{}
	n := o.RawEvents
	o.logf("scenario 3 (limits): %d events per raw measurement", n)

	// kafka-go consume, through the engine's consumer (fetch only).
	topic, consumeN := e2eTopic, o.Events
	if topic == "" {
		var err error
		if topic, _, err = w.Topic(ctx, "raw", o.World.Partitions); err != nil {
			return nil, err
		}
		g := NewGen(GenConfig{Customers: w.Custs, Seed: 3, Tag: w.Run + "k"})
		if _, err := produceBacklog(ctx, o, w, topic, g, n); err != nil {
			return nil, err
		}
		consumeN = n
	}
	cons, err := ingest.NewConsumer(ingest.ConsumerConfig{Conn: w.Kafka, Topic: topic, Group: w.Group("raw-consume"), MaxWait: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	// The clock starts after the first fetch, so the group join is not
	// counted (unless the first fetch took everything).
	got, counted, begin := 0, 0, time.Now()
	start := begin
	fctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	for got < consumeN {
		msgs, err := cons.Fetch(fctx, o.Engine.BatchSize, o.Engine.Linger)
		if err != nil {
			cancel()
			cons.Close()
			return nil, fmt.Errorf("consume: %d of %d: %w", got, consumeN, err)
		}
		if got == 0 {
			start = time.Now()
		} else {
			counted += len(msgs)
		}
		got += len(msgs)
	}
	if counted == 0 {
		counted, start = got, begin
	}
	res.Consume = limit("kafka consume", "kafka-go consumer group, fetch only, batches of "+strconv.Itoa(o.Engine.BatchSize), int64(counted), time.Since(start))
	cancel()
	cons.Close()

	rs, took, err := buildRaw(ctx, w, o, "r", n)
	if err != nil {
		return nil, err
	}
	res.DecodeRate = limit("decode+rate", "ingest.Decode + rating.Rater.Rate, one core", int64(n), took)

	// Redis: the engine's batches, one Lua call per (subscription, partition), pipelined.
	bs := o.Engine.BatchSize
	var chunks [][]balance.Batch
	calls := 0
	for lo := 0; lo < n; lo += bs {
		chunks = append(chunks, rs.batches(lo, min(lo+bs, n), "raw-lua", false))
		calls += len(chunks[len(chunks)-1])
	}
	res.LuaEventsPerCall = float64(n) / float64(calls)
	start = time.Now()
	for _, c := range chunks {
		if _, err := w.Balances.Apply(ctx, c); err != nil {
			return nil, fmt.Errorf("lua batched: %w", err)
		}
	}
	res.LuaBatched = limit("redis lua batched", fmt.Sprintf("balance.Store.Apply, engine-sized batches (%.1f events per Lua call), dedupe on", res.LuaEventsPerCall), int64(n), time.Since(start))

	// Naive, pipelined: the same lines with fresh ids, one Lua call per event.
	rs2, _, err := buildRaw(ctx, w, o, "p", n)
	if err != nil {
		return nil, err
	}
	chunks = chunks[:0]
	for lo := 0; lo < n; lo += bs {
		chunks = append(chunks, rs2.batches(lo, min(lo+bs, n), "raw-naive", true))
	}
	start = time.Now()
	for _, c := range chunks {
		if _, err := w.Balances.Apply(ctx, c); err != nil {
			return nil, fmt.Errorf("naive pipelined: %w", err)
		}
	}
	res.NaivePipe = limit("naive pipelined", "balance.Store.Apply with one event per Lua call, pipelined", int64(n), time.Since(start))

	// Naive, sequential: one minimal Lua call per event, one round trip each.
	ns := min(o.NaiveSeq, n)
	d, err := naiveSequential(ctx, w, rs2, ns)
	if err != nil {
		return nil, err
	}
	res.NaiveSeq = limit("naive sequential", "one minimal Lua call (watermark, SET NX id, HINCRBY) per event, one round trip each", int64(ns), d)

	// ClickHouse: rated_usage rows, engine-sized inserts.
	now := time.Now()
	var rows [][]archive.RatedRow
	for lo := 0; lo < n; lo += bs {
		rows = append(rows, rs.rows(lo, min(lo+bs, n), now))
	}
	start = time.Now()
	for _, r := range rows {
		if err := w.Writer.WriteUsage(ctx, r); err != nil {
			return nil, fmt.Errorf("clickhouse insert: %w", err)
		}
	}
	res.CHInsert = limit("clickhouse insert", "archive.Writer.WriteUsage, rated_usage rows, batches of "+strconv.Itoa(bs), int64(n), time.Since(start))

	d, perCall, err := redisMinimal(ctx, w, rs, n, bs)
	if err != nil {
		return nil, err
	}
	res.RedisMinimal = limit("redis minimal", fmt.Sprintf("the floor: per Lua call (%.1f events) SADD of each fingerprint into 16 bucketed sets, one HINCRBY, one HSET of the offset mark; pipelined by %d", perCall, bs), int64(n), d)
	if d, err = clickhouseNarrow(ctx, w, rs, n, bs); err != nil {
		return nil, err
	}
	res.ClickHouseNarrow = limit("clickhouse narrow", "the floor: rows of (event id, subscription, time, Int64 credits), batches of "+strconv.Itoa(bs), int64(n), d)

	res.Slowest = res.Consume
	for _, l := range []Limit{res.DecodeRate, res.RedisMinimal, res.ClickHouseNarrow} {
		if l.PerSec < res.Slowest.PerSec {
			res.Slowest = l
		}
	}
	for _, l := range res.All() {
		o.logf("  %-20s %10.0f /s  (%s)", l.Name, l.PerSec, l.What)
	}
	return res, nil
}

var naiveScript = redis.NewScript(`
local wm = tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '-1')
if tonumber(ARGV[2]) <= wm then return 0 end
redis.call('HSET', KEYS[2], ARGV[5], ARGV[2])
if not redis.call('SET', KEYS[3] .. ARGV[1], '1', 'NX', 'PX', ARGV[4]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'bal', '-' .. ARGV[3])
return 1
`)

// naiveSequential runs the first n lines of rs one EVALSHA at a time from
// one client, one round trip per event, as a straightforward consumer loop
// would (the baseline of balance/bench_test.go).
func naiveSequential(ctx context.Context, w *World, rs *rawSet, n int) (time.Duration, error) {
	if err := naiveScript.Load(ctx, w.RC).Err(); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		k := w.Prefix + "naive:{" + rs.lines[i].SubscriptionID + "}:"
		if err := naiveScript.EvalSha(ctx, w.RC, []string{k + "a", k + "w", k + "e:"}, rs.events[i].ID, rs.offset[i],
			int64(rs.lines[i].Credits), 3600000, "raw/"+strconv.Itoa(rs.part[i])).Err(); err != nil {
			return 0, fmt.Errorf("naive sequential: %w", err)
		}
	}
	return time.Since(start), nil
}
