package bench

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// MemoryResult is scenario 4a: Redis memory of the remembered event ids (the
// dedupe sets) and of a subscription's other keys, by MEMORY USAGE (exact,
// SAMPLES 0) after scenario 1.
type MemoryResult struct {
	IDs             int64   `json:"ids"` // event ids remembered (applied in scenario 1)
	DedupeKeys      int64   `json:"dedupe_keys"`
	DedupeBytes     int64   `json:"dedupe_bytes"`
	BytesPerID      float64 `json:"bytes_per_id"`
	Subscriptions   int     `json:"subscriptions"`
	SubKeys         int64   `json:"sub_keys"`      // keys besides dedupe sets
	SubBytes        int64   `json:"sub_bytes"`     // all of them
	LedgerBytes     int64   `json:"ledger_bytes"`  // of which ledger streams
	JournalBytes    int64   `json:"journal_bytes"` // of which journals of uncommitted results
	BytesPerSub     float64 `json:"bytes_per_sub"` // SubBytes / subscriptions
	BytesPerSubBase float64 `json:"bytes_per_sub_no_ledger"`
	UsedPerEvent    float64 `json:"used_memory_per_event"` // INFO used_memory delta over scenario 1 / events (noisy: shared Redis)
}

// usedMemory is INFO used_memory, summed over the masters of a cluster.
func usedMemory(ctx context.Context, rc redis.UniversalClient) int64 {
	var mu sync.Mutex
	var total int64
	_ = eachMaster(ctx, rc, func(ctx context.Context, n redis.Cmdable) error {
		s, err := n.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		for _, l := range strings.Split(s, "\r\n") {
			if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
				b, _ := strconv.ParseInt(v, 10, 64)
				mu.Lock()
				total += b
				mu.Unlock()
			}
		}
		return nil
	})
	return total
}

// eachMaster runs f on rc, or on every master of a cluster (SCAN and INFO
// see one node's keys).
func eachMaster(ctx context.Context, rc redis.UniversalClient, f func(context.Context, redis.Cmdable) error) error {
	if cc, ok := rc.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return f(ctx, n) })
	}
	return f(ctx, rc)
}

// keyUsage sums MEMORY USAGE over the keys matching pattern, pipelined.
func keyUsage(ctx context.Context, rc redis.UniversalClient, pattern string, each func(key string, bytes int64)) error {
	var mu sync.Mutex
	return eachMaster(ctx, rc, func(ctx context.Context, n redis.Cmdable) error {
		return keyUsageOn(ctx, n, pattern, func(k string, b int64) { mu.Lock(); each(k, b); mu.Unlock() })
	})
}

func keyUsageOn(ctx context.Context, rc redis.Cmdable, pattern string, each func(key string, bytes int64)) error {
	iter := rc.Scan(ctx, 0, pattern, 2000).Iterator()
	var keys []string
	flush := func() error {
		pipe := rc.Pipeline()
		cmds := make([]*redis.IntCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.MemoryUsage(ctx, k, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		for i, c := range cmds {
			each(keys[i], c.Val())
		}
		keys = keys[:0]
		return nil
	}
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

func runMemory(ctx context.Context, w *World, ids int64, e2e *E2EResult) (*MemoryResult, error) {
	m := &MemoryResult{IDs: ids, Subscriptions: len(w.Subs)}
	err := keyUsage(ctx, w.RC, w.Prefix+"{*", func(k string, n int64) {
		rest := k[strings.IndexByte(k, '}')+1:]
		switch {
		case rest == "" || rest == ":wait": // WaitReplicas' marker, not a subscription's
			return
		case strings.HasPrefix(rest, ":d:"):
			m.DedupeKeys++
			m.DedupeBytes += n
			return
		case rest == ":l":
			m.LedgerBytes += n
		case strings.HasPrefix(rest, ":j:"):
			m.JournalBytes += n
		}
		m.SubKeys++
		m.SubBytes += n
	})
	if err != nil {
		return nil, err
	}
	if ids > 0 {
		m.BytesPerID = float64(m.DedupeBytes) / float64(ids)
	}
	if m.Subscriptions > 0 {
		m.BytesPerSub = float64(m.SubBytes) / float64(m.Subscriptions)
		m.BytesPerSubBase = float64(m.SubBytes-m.LedgerBytes) / float64(m.Subscriptions)
	}
	if e2e != nil && e2e.Events > 0 {
		m.UsedPerEvent = float64(e2e.RedisBytes) / float64(e2e.Events)
	}
	return m, nil
}
