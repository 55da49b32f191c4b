package enginetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// The fault-injecting fakes below test the engine's control flow (stall,
// retry, commit order, drain, journal bounds, repair) without services.
// Each takes a Fail hook: called with the 1-based number of the call, a
// non-nil error makes that call fail.

// ErrDown is a transient failure of a faked service.
var ErrDown = fmt.Errorf("enginetest: service down: %w", balance.ErrUnavailable)

// FailFirst fails the first n calls with err.
func FailFirst(n int, err error) func(int) error {
	return func(call int) error {
		if call <= n {
			return err
		}
		return nil
	}
}

// failCall counts a call in *calls and asks its Fail hook (nil: never fails).
func failCall(calls *int, fail func(int) error) error {
	*calls++
	if fail == nil {
		return nil
	}
	return fail(*calls)
}

// Usage returns n usage messages of partition 0 at offsets from, from+1, …;
// the events are of customer c1 at the given time.
func Usage(from, n int, at time.Time) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		o := from + i
		ev := rating.Event{ID: fmt.Sprint("e", o), CustomerID: "c1", Name: "email.sent", Timestamp: at}
		msgs[i] = kafka.Message{Topic: "usage-events", Partition: 0, Offset: int64(o), Value: ingest.AppendJSON(nil, &ev)}
	}
	return msgs
}

// Log is a one-partition topic in a consumer group: Fetch serves Per
// messages at a time from the committed offset on, Commit records, Rewind
// goes back to the committed offset (a redelivery).
type Log struct {
	Msgs []kafka.Message
	Per  int // messages per fetch (default 1)
	// FailFetch and FailCommit inject failures.
	FailFetch, FailCommit func(call int) error
	// OnCommit runs before a commit is recorded (under no lock), e.g. to
	// check what is durable; an error fails the commit.
	OnCommit func(msgs []kafka.Message) error

	mu               sync.Mutex
	next, committed  int // index of the next message to serve, to commit
	fetches, commits int
	rewinds          int
	Commits          [][]kafka.Message
	changed          chan struct{}
}

func (l *Log) signal() {
	if l.changed != nil {
		close(l.changed)
	}
	l.changed = make(chan struct{})
}

// await unlocks l and waits for its next change (signal) or ctx's end.
func (l *Log) await(ctx context.Context) error {
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	ch := l.changed
	l.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	}
}

// Fetch serves the next messages, or waits for a rewind or ctx's end.
func (l *Log) Fetch(ctx context.Context, limit int, _ time.Duration) ([]kafka.Message, error) {
	for {
		l.mu.Lock()
		if err := failCall(&l.fetches, l.FailFetch); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		if l.next < len(l.Msgs) {
			n := min(max(l.Per, 1), limit, len(l.Msgs)-l.next)
			out := append([]kafka.Message(nil), l.Msgs[l.next:l.next+n]...)
			l.next += n
			l.mu.Unlock()
			return out, nil
		}
		if err := l.await(ctx); err != nil {
			return nil, err
		}
	}
}

// Commit records msgs as committed.
func (l *Log) Commit(_ context.Context, msgs []kafka.Message) error {
	l.mu.Lock()
	err := failCall(&l.commits, l.FailCommit)
	l.mu.Unlock()
	if err == nil && l.OnCommit != nil {
		err = l.OnCommit(msgs)
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Commits = append(l.Commits, msgs)
	for l.committed < len(l.Msgs) && l.Msgs[l.committed].Offset <= msgs[len(msgs)-1].Offset {
		l.committed++
	}
	l.signal()
	return nil
}

// Rewind serves again from the committed offset.
func (l *Log) Rewind(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rewinds++
	l.next = l.committed
	l.signal()
	return nil
}

// Committed is Kafka's committed offset: the next one to consume.
func (l *Log) Committed() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.committed == 0 {
		return 0
	}
	return l.Msgs[l.committed-1].Offset + 1
}

// Rewinds counts the calls of Rewind.
func (l *Log) Rewinds() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rewinds
}

// WaitCommitted waits until every message is committed or ctx ends.
func (l *Log) WaitCommitted(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.committed == len(l.Msgs) {
			l.mu.Unlock()
			return nil
		}
		if err := l.await(ctx); err != nil {
			return fmt.Errorf("%w: %d of %d messages committed", err, l.Committed(), len(l.Msgs))
		}
	}
}

// OneCredit rates every event into one line of 1 credit of "sub-" + its customer.
type OneCredit struct{}

// Rate appends the event's line.
func (OneCredit) Rate(ev *rating.Event, dst []rating.Line) ([]rating.Line, error) {
	return append(dst, rating.Line{SubscriptionID: "sub-" + ev.CustomerID, CustomerID: ev.CustomerID, FeatureID: "f",
		Credits: credit.Credits(1)}), nil
}

// Ledger is an in-memory balance store with what the engine relies on:
// a per-partition offset watermark, a journal of the results of offsets at
// or above the batch's Committed bound (redeliveries get them back), one
// ledger entry per applied batch, and ErrBehind when a batch expects a seq
// the ledger lacks.
type Ledger struct {
	// Fail, when it returns an error, fails the call: before applying, or
	// after (the scripts ran, their result is lost) when FailAfterApply.
	Fail           func(call int) error
	FailAfterApply bool
	// FailBatch, when it returns an error, refuses every batch of the call
	// with it (BatchResult.Err), applying nothing.
	FailBatch func(call int) error
	// OnApply sees every batch before it is applied.
	OnApply func(b balance.Batch)

	mu      sync.Mutex
	calls   int
	subs    map[string]*ledgerSub
	Batches []balance.Batch // every batch received
}

type ledgerSub struct {
	seq       int64
	watermark map[int32]int64 // highest offset applied, per partition
	journal   map[int64]balance.LineResult
	balance   credit.Amount
}

// Lose makes sub's ledger forget its last n entries, as a Redis that lost
// acknowledged writes.
func (l *Ledger) Lose(sub string, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.subs[sub]; s != nil {
		s.seq = max(s.seq-n, 0)
	}
}

// Seq is sub's last ledger seq.
func (l *Ledger) Seq(sub string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.subs[sub]; s != nil {
		return s.seq
	}
	return 0
}

// Balance is sub's balance.
func (l *Ledger) Balance(sub string) credit.Amount {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.subs[sub]; s != nil {
		return s.balance
	}
	return 0
}

// Calls counts the calls of Apply.
func (l *Ledger) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// Apply applies the batches.
func (l *Ledger) Apply(_ context.Context, bs []balance.Batch) ([]balance.BatchResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fail := failCall(&l.calls, l.Fail)
	if fail != nil && !l.FailAfterApply {
		return nil, fail
	}
	if l.subs == nil {
		l.subs = map[string]*ledgerSub{}
	}
	out := make([]balance.BatchResult, len(bs))
	if l.FailBatch != nil {
		if err := l.FailBatch(l.calls); err != nil {
			for i, b := range bs {
				out[i] = balance.BatchResult{Subscription: b.Subscription, Err: err}
			}
			return out, nil
		}
	}
	for i, b := range bs {
		if l.OnApply != nil {
			l.OnApply(b)
		}
		l.Batches = append(l.Batches, b)
		out[i] = l.apply(b)
	}
	if fail != nil {
		for i := range out {
			out[i].Entries = nil // applied; the read of the entries failed
		}
		return out, fail
	}
	return out, nil
}

func (l *Ledger) apply(b balance.Batch) balance.BatchResult {
	s := l.subs[b.Subscription]
	if s == nil {
		s = &ledgerSub{watermark: map[int32]int64{}, journal: map[int64]balance.LineResult{}}
		l.subs[b.Subscription] = s
	}
	if b.Expect > s.seq {
		return balance.BatchResult{Subscription: b.Subscription,
			Err: fmt.Errorf("%w: seq %d, expected %d", balance.ErrBehind, s.seq, b.Expect)}
	}
	for o := range s.journal {
		if o < b.Committed {
			delete(s.journal, o)
		}
	}
	res := balance.BatchResult{Subscription: b.Subscription, Lines: make([]balance.LineResult, len(b.Lines))}
	w, seen := s.watermark[b.Partition]
	var sum credit.Amount
	for j, ln := range b.Lines {
		if seen && ln.Offset <= w {
			r, ok := s.journal[ln.Offset]
			if !ok {
				r = balance.LineResult{}
			}
			r.Status, r.Journaled = balance.DuplicateOffset, ok
			res.Lines[j] = r
			continue
		}
		s.balance -= ln.Credits
		sum += ln.Credits
		r := balance.LineResult{Status: balance.Applied, Draws: []balance.Draw{{Grant: "g1", Amount: ln.Credits}}, Balance: s.balance}
		s.journal[ln.Offset] = r
		res.Lines[j] = r
		w, seen = ln.Offset, true
	}
	s.watermark[b.Partition] = w
	res.Balance = s.balance
	if sum > 0 {
		s.seq++
		res.FirstSeq, res.LastSeq = s.seq, s.seq
		res.Entries = []balance.Entry{{Seq: s.seq, Kind: "usage", Amount: -sum, Balance: s.balance, Time: time.Now()}}
	}
	return res
}

// Archive keeps the rows it is given once a write succeeds.
type Archive struct {
	Fail       func(call int) error // per WriteUsage call
	FailLedger func(call int) error // per WriteLedger call

	ledgerCalls int
	mu          sync.Mutex
	calls       int
	Usage       map[int64]archive.RatedRow // by offset
	Ledger      []archive.LedgerRow
	Times       []time.Time // of every WriteUsage call
}

// WriteUsage stores rows unless Fail fails the call.
func (a *Archive) WriteUsage(_ context.Context, rows []archive.RatedRow) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Times = append(a.Times, time.Now())
	if err := failCall(&a.calls, a.Fail); err != nil {
		return err
	}
	if a.Usage == nil {
		a.Usage = map[int64]archive.RatedRow{}
	}
	for _, r := range rows {
		a.Usage[r.Offset] = r
	}
	return nil
}

// WriteLedger stores rows.
func (a *Archive) WriteLedger(_ context.Context, rows []archive.LedgerRow) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := failCall(&a.ledgerCalls, a.FailLedger); err != nil {
		return err
	}
	a.Ledger = append(a.Ledger, rows...)
	return nil
}

// Durable reports whether usage rows of every message are stored.
func (a *Archive) Durable(msgs []kafka.Message) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range msgs {
		if _, ok := a.Usage[m.Offset]; !ok {
			return fmt.Errorf("offset %d committed before its usage row is archived", m.Offset)
		}
	}
	return nil
}

// Calls counts WriteUsage calls.
func (a *Archive) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// DLQ keeps the dead letters it accepts.
type DLQ struct {
	Fail func(call int) error // per non-empty SendDLQ call

	mu    sync.Mutex
	calls int
	Dead  []ingest.DeadLetter
}

// SendDLQ stores dls unless Fail refuses.
func (d *DLQ) SendDLQ(_ context.Context, dls []ingest.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := failCall(&d.calls, d.Fail); err != nil {
		return err
	}
	d.Dead = append(d.Dead, dls...)
	return nil
}

// Letters returns a copy of the accepted dead letters.
func (d *DLQ) Letters() []ingest.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]ingest.DeadLetter(nil), d.Dead...)
}

// Repairer repairs by asking the Ledger: the repaired seq is its current one.
type Repairer struct {
	Ledger *Ledger
	mu     sync.Mutex
	stale  []string
	Fixed  []string
}

// MarkStale makes the next Stale call report subs.
func (r *Repairer) MarkStale(subs ...string) {
	r.mu.Lock()
	r.stale = append(r.stale, subs...)
	r.mu.Unlock()
}

// Stale returns the subscriptions marked stale, once.
func (r *Repairer) Stale(context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stale
	r.stale = nil
	return s, nil
}

// FixedNow is a copy of Fixed, safe while the engine runs.
func (r *Repairer) FixedNow() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.Fixed...)
}

// Reset forgets what was repaired.
func (r *Repairer) Reset() {
	r.mu.Lock()
	r.Fixed = nil
	r.mu.Unlock()
}

// Repair records sub and returns its ledger seq.
func (r *Repairer) Repair(_ context.Context, sub string) (int64, bool, error) {
	r.mu.Lock()
	r.Fixed = append(r.Fixed, sub)
	r.mu.Unlock()
	if r.Ledger == nil {
		return 0, false, errors.New("enginetest: repairer without a ledger")
	}
	return r.Ledger.Seq(sub), true, nil
}
