package engine

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/creditmeter/creditmeter/ingest"
)

// GroupWatcher is a Source that can tell where its whole consumer group
// stands on every partition of the topic (ingest.Consumer), whichever member
// the partition is assigned to.
type GroupWatcher interface {
	GroupOffsets(ctx context.Context) (map[int]ingest.PartitionOffsets, error)
}

// groupMark is when the group's committed offset of a partition was last
// seen to move (or the partition to be caught up).
type groupMark struct {
	committed int64
	since     time.Time
}

// watchGroup makes the group rebalance when a partition that has messages
// sees no commit for StuckAfter, whichever member owns it: a partition the
// assignment left out, a member that missed a rebalance or whose commit
// waits for a generation that never comes, a dead member the broker did
// not expire. This member rejoins; the rebalance gives every member a new
// generation that starts at the committed offsets. A member that is itself
// stalled (a service down) does not, since the whole group waits then.
// Only exportLag's goroutine calls it.
func (e *Engine) watchGroup(ctx context.Context, offs map[int]ingest.PartitionOffsets) {
	now := time.Now()
	if e.marks == nil {
		e.marks = map[int]groupMark{}
	}
	var stuck []int
	var behind int64
	holders := map[string]bool{}
	for p, o := range offs {
		m, ok := e.marks[p]
		if !ok || o.Committed != m.committed || o.Lag() == 0 {
			e.marks[p] = groupMark{committed: o.Committed, since: now}
			continue
		}
		if now.Sub(m.since) >= e.cfg.StuckAfter {
			stuck = append(stuck, p)
			behind += o.Lag()
			holders[o.Member] = true
		}
	}
	rw, ok := e.src.(Rewinder)
	if len(stuck) == 0 || !ok || e.Ready() != nil {
		return
	}
	slices.Sort(stuck)
	held := slices.Sorted(maps.Keys(holders)) // "" is a partition no member holds
	e.log.Warn("the group committed nothing on partitions that have messages; rejoining so that it rebalances",
		"partitions", stuck, "behind", behind, "after", e.cfg.StuckAfter, "held_by", held)
	if e.m != nil {
		e.m.Retries.WithLabelValues("rebalance").Inc()
	}
	for p, m := range e.marks {
		e.marks[p] = groupMark{committed: m.committed, since: now} // the rebalance gets StuckAfter
	}
	if e.inflight.Load() != 0 {
		e.rejoin.Store(true) // the produce stage rejoins between two batches
		return
	}
	e.progress.Store(time.Now().UnixNano())
	if err := rw.Rewind(ctx); err != nil {
		e.log.Warn("rejoining the group", "err", err)
	}
}

// readLag asks the broker once per interval: the whole group's offsets
// when the source can tell them (this member's lag is its share of them),
// else only this member's lag.
func (e *Engine) readLag(ctx context.Context, ls LagSource) (map[int]int64, map[int]ingest.PartitionOffsets, error) {
	gw, ok := e.src.(GroupWatcher)
	if !ok {
		lags, err := ls.AssignedLag(ctx)
		return lags, nil, err
	}
	offs, err := gw.GroupOffsets(ctx)
	if err != nil {
		return nil, nil, err
	}
	lags := map[int]int64{}
	for p, o := range offs {
		if o.Mine {
			lags[p] = o.Lag()
		}
	}
	return lags, offs, nil
}

// rejoinBetweenBatches is the produce stage's part of watchGroup: with a
// rejoin asked for, it waits for the batches in flight to finish, then
// rejoins, so that no fetched batch straddles two generations.
func (e *Engine) rejoinBetweenBatches(ctx context.Context) {
	if !e.rejoin.Swap(false) {
		return
	}
	rw, ok := e.src.(Rewinder)
	if !ok {
		return
	}
	for e.inflight.Load() != 0 {
		if !sleep(ctx, 5*time.Millisecond) {
			return
		}
	}
	e.progress.Store(time.Now().UnixNano())
	if err := rw.Rewind(ctx); err != nil {
		e.log.Warn("rejoining the group", "err", err)
	}
}
