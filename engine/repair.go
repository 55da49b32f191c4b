package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
)

// Repairer detects and repairs subscriptions whose Redis state lost
// acknowledged writes (reconcile.Repairer).
type Repairer interface {
	// Stale lists the subscriptions whose Redis ledger lacks the archive's
	// last entry.
	Stale(ctx context.Context) ([]string, error)
	// Repair brings sub back to the archive's truth if it disagrees and
	// returns Redis's ledger seq after it.
	Repair(ctx context.Context, sub string) (seq int64, repaired bool, err error)
}

// Rewinder is a Source that can start again from the committed offsets.
type Rewinder interface {
	Rewind(ctx context.Context) error
}

// errRepair stops the pipeline: Redis lost acknowledged writes of these
// subscriptions. Run finishes the batches in flight, repairs them, rewinds
// the source to the committed offsets and goes on.
type errRepair struct {
	subs []string
	why  string
}

func (e *errRepair) Error() string {
	s := e.subs
	more := ""
	if len(s) > 5 {
		s, more = s[:5], fmt.Sprintf(" and %d more", len(e.subs)-5)
	}
	return fmt.Sprintf("redis lost acknowledged writes (%s): repairing %s%s", e.why, strings.Join(s, ", "), more)
}

// checkRedis runs before a batch is applied: when the Redis nodes are not
// those last verified (a restart, a failover, a new server), every
// subscription's Redis ledger is compared with the archive, and the batch
// waits for the repair of those that lost writes.
func (e *Engine) checkRedis(ctx context.Context) error {
	if e.cfg.Repair == nil {
		return nil
	}
	e.checkMu.Lock()
	defer e.checkMu.Unlock()
	var id string
	if e.cfg.RedisIdentity != nil {
		if err := e.retry(ctx, "balance", func(ctx context.Context) error {
			var err error
			id, err = e.cfg.RedisIdentity(ctx)
			return err
		}); err != nil {
			return err
		}
		if e.verified && id == e.identity {
			return nil
		}
	} else if e.verified {
		return nil
	}
	var stale []string
	if err := e.retry(ctx, "verify", func(ctx context.Context) error {
		var err error
		stale, err = e.cfg.Repair.Stale(ctx)
		return err
	}); err != nil {
		return err
	}
	if len(stale) > 0 {
		return &errRepair{subs: stale, why: "the archive holds entries Redis does not"}
	}
	e.identity, e.verified = id, true
	return nil
}

// watchRedis runs checkRedis at start and every RedisCheckEvery until ctx
// ends, so an engine that receives no message still repairs lost writes
// (after a restart of its own, or of Redis while it idles) instead of
// leaving the balances behind until the next event. A finding, or a
// failure that stops the engine, cancels ctx with it as the cause.
func (e *Engine) watchRedis(ctx context.Context, stop context.CancelCauseFunc) {
	t := time.NewTicker(e.cfg.RedisCheckEvery)
	defer t.Stop()
	for {
		if err := e.checkRedis(ctx); err != nil {
			if ctx.Err() == nil {
				stop(err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// repair repairs the subscriptions of r, records Redis's seq of each as
// the one seen, and rewinds the source.
func (e *Engine) repair(ctx context.Context, r *errRepair) error {
	e.log.Error("redis lost acknowledged writes; repairing from the archive", "why", r.why, "subscriptions", len(r.subs),
		"first", r.subs[0])
	e.setStalled("repair", r)
	if e.cfg.Repair == nil {
		return fmt.Errorf("%w (no repairer configured)", r)
	}
	// Subscriptions are independent: repair several at once (each costs a
	// few archive queries and one script).
	type done struct {
		sub   string
		seq   int64
		fixed bool
	}
	const workers = 8
	subs := make(chan string)
	results := make(chan done, len(r.subs))
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sub := range subs {
				var d done
				if err := e.retry(ctx, "repair", func(ctx context.Context) error {
					var err error
					d.seq, d.fixed, err = e.cfg.Repair.Repair(ctx, sub)
					if errors.Is(err, balance.ErrConflict) {
						return fmt.Errorf("%w: %v", balance.ErrUnavailable, err) // moved meanwhile: look again
					}
					return err
				}); err != nil {
					errs <- err
					return
				}
				d.sub = sub
				results <- d
			}
		}()
	}
	feed, stop := context.WithCancel(ctx) // ends the feeder when workers give up
	defer stop()
	go func() {
		defer close(subs)
		for _, sub := range r.subs {
			select {
			case subs <- sub:
			case <-feed.Done():
				return
			}
		}
	}()
	wg.Wait()
	close(results)
	select {
	case err := <-errs:
		return err
	default:
	}
	repaired := 0
	for d := range results {
		e.seen[d.sub] = d.seq
		if d.fixed {
			repaired++
			if e.m != nil {
				e.m.Repairs.Inc()
			}
		}
	}
	e.log.Warn("repaired from the archive", "subscriptions", repaired, "checked", len(r.subs))
	e.verified = false // look at every subscription again before the next batch
	rw, ok := e.src.(Rewinder)
	if !ok {
		return fmt.Errorf("%w: the source cannot rewind; restart the engine", r)
	}
	if err := e.retry(ctx, "rewind", rw.Rewind); err != nil {
		return err
	}
	e.setStalled("repair", nil)
	return nil
}

// conflict turns an archive refusal of ledger entries into errRepair.
func (e *Engine) conflict(err error) error {
	var ce *archive.LedgerConflictError
	if !errors.As(err, &ce) {
		return err
	}
	if e.m != nil {
		e.m.LedgerConflicts.Add(float64(len(ce.Keys)))
	}
	e.log.Error("archive refused ledger entries that reuse archived sequence numbers", "err", err)
	return &errRepair{subs: ce.Subscriptions(), why: "a ledger seq reused"}
}
