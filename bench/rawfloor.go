package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// minimalScript is the least Redis work the job needs, with none of
// creditmeter's bookkeeping: per call (one subscription's events of one
// partition), each event's fingerprint into one of 16 bucketed sets (the
// duplicate check), one HINCRBY of the balance and one HSET of the offset
// mark. The "true raw limit" beside creditmeter's own script.
var minimalScript = redis.NewScript(`
local fresh = 0
for i = 4, #ARGV do
  local fp = ARGV[i]
  fresh = fresh + redis.call('SADD', KEYS[3] .. string.sub(fp, -1), fp)
end
redis.call('HINCRBY', KEYS[1], 'bal', -tonumber(ARGV[3]))
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return fresh
`)

// redisMinimal runs minimalScript over the first n lines of rs in
// engine-sized chunks, each chunk one pipeline of one call per
// (subscription, partition).
func redisMinimal(ctx context.Context, w *World, rs *rawSet, n, chunk int) (time.Duration, float64, error) {
	if err := minimalScript.Load(ctx, w.RC).Err(); err != nil {
		return 0, 0, err
	}
	type call struct {
		keys []string
		args []any
	}
	var chunks [][]call
	calls := 0
	for lo := 0; lo < n; lo += chunk {
		var cs []call
		for _, b := range rs.batches(lo, min(lo+chunk, n), "raw-min", false) {
			k := w.Prefix + "min:{" + b.Subscription + "}:"
			var total int64
			args := make([]any, 3, 3+len(b.Lines))
			for _, l := range b.Lines {
				total += int64(l.Credits)
				h := fnv.New64a()
				h.Write([]byte(l.EventID))
				args = append(args, strconv.FormatUint(h.Sum64(), 16))
			}
			args[0], args[1], args[2] = "raw-min/"+strconv.Itoa(int(b.Partition)), b.Lines[len(b.Lines)-1].Offset, total
			cs = append(cs, call{keys: []string{k + "a", k + "w", k + "d:"}, args: args})
		}
		calls += len(cs)
		chunks = append(chunks, cs)
	}
	start := time.Now()
	for _, cs := range chunks {
		p := w.RC.Pipeline()
		for _, c := range cs {
			minimalScript.EvalSha(ctx, p, c.keys, c.args...) // Exec reports any failure
		}
		if _, err := p.Exec(ctx); err != nil {
			return 0, 0, fmt.Errorf("redis minimal: %w", err)
		}
	}
	return time.Since(start), float64(n) / float64(max(calls, 1)), nil
}

// clickhouseNarrow inserts the first n lines of rs as narrow rows (event
// id, subscription, time, Int64 credits) in engine-sized batches: the
// floor of the archive's work beside archive.Writer's rated_usage rows.
func clickhouseNarrow(ctx context.Context, w *World, rs *rawSet, n, chunk int) (time.Duration, error) {
	table := "raw_narrow_" + w.Run
	if err := w.Conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+
		" (event_id String, subscription_id String, event_time DateTime('UTC'), credits Int64) ENGINE = MergeTree ORDER BY (subscription_id, event_time)"); err != nil {
		return 0, fmt.Errorf("clickhouse narrow: %w", err)
	}
	defer func() { _ = w.Conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+table) }()
	start := time.Now()
	for lo := 0; lo < n; lo += chunk {
		b, err := w.Conn.PrepareBatch(ctx, "INSERT INTO "+table+" (event_id, subscription_id, event_time, credits)")
		if err != nil {
			return 0, fmt.Errorf("clickhouse narrow: %w", err)
		}
		hi := min(lo+chunk, n)
		ids, subs, times, credits := make([]string, 0, hi-lo), make([]string, 0, hi-lo), make([]time.Time, 0, hi-lo), make([]int64, 0, hi-lo)
		for i := lo; i < hi; i++ {
			ids = append(ids, rs.events[i].ID)
			subs = append(subs, rs.lines[i].SubscriptionID)
			times = append(times, rs.events[i].Timestamp)
			credits = append(credits, int64(rs.lines[i].Credits))
		}
		for i, col := range []any{ids, subs, times, credits} {
			if err := b.Column(i).Append(col); err != nil {
				return 0, fmt.Errorf("clickhouse narrow: %w", err)
			}
		}
		if err := b.Send(); err != nil {
			return 0, fmt.Errorf("clickhouse narrow: %w", err)
		}
	}
	return time.Since(start), nil
}
