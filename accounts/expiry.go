package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/creditmeter/creditmeter/balance"
)

// SubscriptionRef is a subscription and its customer (from the catalog).
type SubscriptionRef struct{ ID, Customer string }

// ExpirySweep writes the breakage of idle subscriptions: every write script
// already turns grants past expiry + grace into expiry entries, but a
// subscription without events, top-ups or adjustments runs none, so its
// expired credits would stay in its balance and reach the ledger (and the
// invoice) only at its next event, maybe months later. The sweep lists the
// subscriptions, finds the due ones by their account's soonest expiry
// (balance.Store.DueForExpiry, pipelined), runs Expire on them and archives
// the entries written, as the API archives its changes. Run it under a
// lease (one node at a time); Expire is exactly-once anyway.
type ExpirySweep struct {
	Accounts *Accounts
	// List gives the subscriptions to check (serve: the catalog's).
	List func(ctx context.Context) ([]SubscriptionRef, error)
	Log  *slog.Logger
	// Notify, when set, hears of the entries from..to each Expire wrote
	// (webhooks: grant.expired); its error is reported, not retried.
	Notify func(ctx context.Context, sub, customer string, from, to int64) error
	// Ending, when set, also settles the credits of ended subscriptions
	// whose books have closed (plan changes and cancellations).
	Ending *Ending

	mu      sync.Mutex
	pending []exportRange // written to the ledger, not yet archived
}

type exportRange struct {
	sub, customer string
	from, to      int64
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Checked, Due, Expired, Entries int
	Ended                          int // ended subscriptions whose credits were settled
}

// Once runs one sweep. An archive failure keeps the entries' range and
// retries it at the next sweep (a crash meanwhile leaves them to
// `creditmeter reconcile --repair`); a failed subscription does not stop
// the others.
func (s *ExpirySweep) Once(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	errs := []error{s.retryPending(ctx)}
	subs, err := s.List(ctx)
	if err != nil {
		return res, errors.Join(append(errs, fmt.Errorf("expiry sweep: listing subscriptions: %w", err))...)
	}
	ids := make([]string, len(subs))
	cust := make(map[string]string, len(subs))
	for i, r := range subs {
		ids[i], cust[r.ID] = r.ID, r.Customer
	}
	res.Checked = len(ids)
	due, err := s.Accounts.Store.DueForExpiry(ctx, ids)
	res.Due = len(due)
	if err != nil {
		errs = append(errs, fmt.Errorf("expiry sweep: %w", err))
	}
	for _, sub := range due {
		if ctx.Err() != nil {
			break
		}
		r, err := s.Accounts.Store.Expire(ctx, sub)
		if errors.Is(err, balance.ErrUnknownSubscription) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("expiry sweep: %s: %w", sub, err))
			continue
		}
		if r.FirstSeq == 0 {
			continue
		}
		res.Expired++
		res.Entries += int(r.Seq - r.FirstSeq + 1)
		if s.Notify != nil {
			if err := s.Notify(ctx, sub, cust[sub], r.FirstSeq, r.Seq); err != nil {
				errs = append(errs, fmt.Errorf("expiry sweep: notifying %s entries %d-%d: %w", sub, r.FirstSeq, r.Seq, err))
			}
		}
		if err := s.Accounts.Export(ctx, sub, cust[sub], r.FirstSeq, r.Seq); err != nil {
			s.mu.Lock()
			s.pending = append(s.pending, exportRange{sub, cust[sub], r.FirstSeq, r.Seq})
			s.mu.Unlock()
			errs = append(errs, fmt.Errorf("expiry sweep: archiving %s entries %d-%d (retried next sweep): %w", sub, r.FirstSeq, r.Seq, err))
		}
	}
	if s.Ending != nil && ctx.Err() == nil {
		n, err := s.Ending.Once(ctx)
		res.Ended = n
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

func (s *ExpirySweep) retryPending(ctx context.Context) error {
	s.mu.Lock()
	todo := s.pending
	s.pending = nil
	s.mu.Unlock()
	for i, p := range todo {
		if err := s.Accounts.Export(ctx, p.sub, p.customer, p.from, p.to); err != nil {
			s.mu.Lock()
			s.pending = append(s.pending, todo[i:]...)
			s.mu.Unlock()
			return fmt.Errorf("expiry sweep: archiving %s entries %d-%d: %w", p.sub, p.from, p.to, err)
		}
	}
	return nil
}

// Run sweeps every interval until ctx ends (run it under a lease).
func (s *ExpirySweep) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := s.Once(ctx)
		if s.Log != nil {
			if err != nil && ctx.Err() == nil {
				s.Log.Warn("expiry sweep", "err", err)
			}
			if r.Expired > 0 {
				s.Log.Info("expiry sweep: breakage written", "subscriptions", r.Expired, "entries", r.Entries)
			}
			if r.Ended > 0 {
				s.Log.Info("expiry sweep: ended subscriptions' credits settled", "subscriptions", r.Ended)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// exportChange archives the entry seq of a top-up, adjustment or grant and
// the breakage its script wrote just before it (every write script sweeps
// expired grants first): the run of expiry entries preceding seq. Expiry
// entries of an earlier sweep in that run are archived again, identically.
func (a *Accounts) exportChange(ctx context.Context, sub, customer string, seq int64) error {
	from := seq
	for from > 1 {
		lo := max(1, from-16)
		es, err := a.Store.Ledger(ctx, sub, lo, int(from-lo))
		if err != nil {
			return err
		}
		i := len(es) - 1
		for ; i >= 0 && es[i].Kind == "expiry" && es[i].Seq == from-1; i-- {
			from--
		}
		if i >= 0 || lo == 1 || len(es) == 0 {
			break
		}
	}
	return a.Export(ctx, sub, customer, from, seq)
}
