package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/rating"
)

// ReasonNoAccount: the subscription is in the catalog but has no balance
// account (its creation did not finish); the events wait in the DLQ.
const ReasonNoAccount = "no_balance_account"

// eventRef ties a message to its rated lines and its balance line.
type eventRef struct {
	msg         int // index in the fetched messages
	first, last int // its rated lines: lines[first:last]
	batch, line int // its balance line: batches[batch].Lines[line]
}

type groupKey struct {
	sub       string
	partition int
}

// Process rates, applies, archives and commits one fetched batch. It returns
// only when the batch's offsets are committed, or with an error when ctx
// ended first or a permanent failure stops the engine (nothing is skipped).
func (e *Engine) Process(ctx context.Context, msgs []kafka.Message) error {
	p, err := e.prepare(ctx, msgs)
	if err != nil || p == nil {
		return err
	}
	return e.finish(ctx, p)
}

// pending is a batch whose balance changes are made and whose archive rows,
// dead letters and commit are still to do.
type pending struct {
	msgs         []kafka.Message
	usage        []archive.RatedRow
	ledger       []archive.LedgerRow
	dead         []ingest.DeadLetter
	counts       rowCounts
	results      []balance.BatchResult
	start, rated time.Time
}

// prepare decodes, rates and applies a batch to the balances and builds its
// archive rows; the rows hold nothing of the engine's reused buffers, so the
// next batch may be prepared while this one finishes.
func (e *Engine) prepare(ctx context.Context, msgs []kafka.Message) (*pending, error) {
	start := time.Now()
	if len(msgs) == 0 {
		return nil, nil
	}
	if cap(e.events) < len(msgs) {
		e.events = make([]rating.Event, len(msgs))
	}
	events := e.events[:len(msgs)]
	lines, spans, failed := e.rateAll(ctx, msgs, events, e.lines[:0])
	batches, refs, dead := e.group(ctx, msgs, events, lines, spans, failed)
	e.lines = lines
	rated := time.Now()

	if len(batches) > 0 {
		if err := e.checkRedis(ctx); err != nil {
			return nil, err
		}
	}
	for i := range batches {
		batches[i].Expect = e.seen[batches[i].Subscription]
	}
	results, refused, err := e.apply(ctx, batches)
	if err != nil {
		return nil, err
	}
	for i := range results {
		if s := results[i].LastSeq; s > e.seen[batches[i].Subscription] {
			e.seen[batches[i].Subscription] = s
		}
	}
	for bi, why := range refused {
		for _, r := range refs {
			if r.batch == bi {
				dead = append(dead, ingest.DeadLetter{Msg: msgs[r.msg], Reason: ReasonNoAccount, Detail: why})
			}
		}
	}

	usage, ledger, counts := e.rows(msgs, events, lines, refs, batches, results)
	counts.rated = len(lines)
	return &pending{msgs: msgs, usage: usage, ledger: ledger, dead: dead, counts: counts, results: results, start: start, rated: rated}, nil
}

// rateAll is pass 1: decode and rate every message, appending to lines;
// lines[spans[i][0]:spans[i][1]] are message i's, failed[i] its error.
func (e *Engine) rateAll(ctx context.Context, msgs []kafka.Message, events []rating.Event, lines []rating.Line) ([]rating.Line, [][2]int, []error) {
	spans := make([][2]int, len(msgs))
	failed := make([]error, len(msgs))
	var unknown []int // rated against a catalog that may not yet know the subscription
	now := e.cfg.Now()
	for i := range msgs {
		if _, ok := e.firstSeen[msgs[i].Partition]; !ok {
			e.firstSeen[msgs[i].Partition] = msgs[i].Offset
		}
		if err := ingest.DecodeMessage(&msgs[i], &events[i]); err != nil {
			failed[i] = err
			continue
		}
		if err := ingest.CheckFuture(events[i].Timestamp, now, e.cfg.MaxFutureSkew); err != nil {
			failed[i] = err
			continue
		}
		first := len(lines)
		lines, failed[i] = e.rater.Rate(&events[i], lines)
		spans[i] = [2]int{first, len(lines)}
		if isUnknownSubscription(failed[i]) {
			unknown = append(unknown, i)
		}
	}
	// A subscription created a moment ago may not have reached the rater:
	// refresh the catalog once and rate those events again.
	if len(unknown) > 0 && e.cfg.Refresh != nil {
		if err := e.cfg.Refresh(ctx); err != nil {
			e.log.Warn("catalog refresh before dead-lettering", "err", err)
		}
		for _, i := range unknown {
			first := len(lines)
			lines, failed[i] = e.rater.Rate(&events[i], lines)
			spans[i] = [2]int{first, len(lines)}
		}
	}
	return lines, spans, failed
}

// group is pass 2, in offset order: dead letters, and balance lines per
// (subscription, partition).
func (e *Engine) group(ctx context.Context, msgs []kafka.Message, events []rating.Event, lines []rating.Line, spans [][2]int, failed []error) ([]balance.Batch, []eventRef, []ingest.DeadLetter) {
	refs := make([]eventRef, 0, len(msgs))
	var dead []ingest.DeadLetter
	var batches []balance.Batch
	groups := map[groupKey]int{}
	for i := range msgs {
		m := &msgs[i]
		ev := &events[i]
		first, last := spans[i][0], spans[i][1]
		if err := failed[i]; err != nil {
			dead = append(dead, e.failedLetter(ctx, m, ev, err))
			continue
		}
		if last == first {
			dead = append(dead, ingest.DeadLetter{Msg: *m, Reason: ingest.ReasonUnratable, Field: "event_name",
				Detail: fmt.Sprintf("no meter of the subscription's plan matches event %q", ev.Name)})
			continue
		}
		var total credit.Amount
		for _, l := range lines[first:last] {
			total += l.Credits
		}
		if total > credit.MaxAmount {
			dead = append(dead, ingest.DeadLetter{Msg: *m, Reason: ingest.ReasonUnratable, Detail: "credits of the event beyond the maximum amount"})
			continue
		}
		k := groupKey{lines[first].SubscriptionID, m.Partition}
		bi, ok := groups[k]
		if !ok {
			bi = len(batches)
			groups[k] = bi
			batches = append(batches, balance.Batch{Subscription: k.sub, Topic: m.Topic, Partition: int32(m.Partition),
				Committed: e.committedBefore(m.Partition, m.Offset)})
		}
		b := &batches[bi]
		if n := len(b.Lines); n > 0 && m.Offset <= b.Lines[n-1].Offset {
			continue // fetched twice in one batch (a rebalance re-read it): the first copy counts
		}
		b.Lines = append(b.Lines, balance.Line{EventID: ev.ID, Offset: m.Offset, Time: ev.Timestamp, Credits: total, Unique: uniqueParts(lines[first:last])})
		refs = append(refs, eventRef{msg: i, first: first, last: last, batch: bi, line: len(b.Lines) - 1})
	}
	return batches, refs, dead
}

// failedLetter is the dead letter of a message that did not decode or rate.
func (e *Engine) failedLetter(ctx context.Context, m *kafka.Message, ev *rating.Event, err error) ingest.DeadLetter {
	var ee *ingest.EventError
	if errors.As(err, &ee) {
		return ingest.DeadLetter{Msg: *m, Reason: ee.Reason, Field: ee.Field, Detail: ee.Detail}
	}
	reason := ingest.RateReason(err)
	if reason == ingest.ReasonNoSubscription && e.cfg.CustomerExists != nil && !e.cfg.CustomerExists(ctx, ev.CustomerID) {
		reason = ingest.ReasonUnknownCust
	}
	return ingest.DeadLetter{Msg: *m, Reason: reason, Field: ingest.ReasonField(reason), Detail: err.Error()}
}

// finish archives a prepared batch, sends its dead letters and commits its
// offsets, in that order. Batches must finish in the order they were prepared.
func (e *Engine) finish(ctx context.Context, p *pending) error {
	if err := e.retry(ctx, "archive", func(ctx context.Context) error {
		if err := e.archive.WriteUsage(ctx, p.usage); err != nil {
			return err
		}
		// A refused entry means Redis reused a seq: it lost writes.
		return e.conflict(e.archive.WriteLedger(ctx, p.ledger))
	}); err != nil {
		return err
	}
	if err := e.retry(ctx, "dlq", func(ctx context.Context) error { return e.dlq.SendDLQ(ctx, p.dead) }); err != nil {
		return err
	}
	if e.cfg.Notify != nil {
		if err := e.retry(ctx, "notify", func(ctx context.Context) error { return e.cfg.Notify(ctx, p.results) }); err != nil {
			return err
		}
	}
	if e.cfg.WaitReplicas != nil {
		if err := e.retry(ctx, "replicas", e.cfg.WaitReplicas); err != nil {
			return err
		}
	}
	if err := e.retry(ctx, "commit", func(ctx context.Context) error { return e.src.Commit(ctx, p.msgs) }); err != nil {
		return err
	}
	e.nextMu.Lock()
	for i := range p.msgs {
		if n := p.msgs[i].Offset + 1; n > e.next[p.msgs[i].Partition] {
			e.next[p.msgs[i].Partition] = n
		}
	}
	e.nextMu.Unlock()
	if e.m != nil {
		e.m.observeBatch(p.msgs, p.dead, p.counts, p.start, p.rated, p.results, time.Now())
	}
	return nil
}

// apply runs the balance batches, retrying those that failed for a transient
// reason and keeping the results of those that succeeded (a re-run would see
// them as redelivered). Batches refused for good are returned with why.
func (e *Engine) apply(ctx context.Context, batches []balance.Batch) ([]balance.BatchResult, map[int]string, error) {
	results := make([]balance.BatchResult, len(batches))
	refused := map[int]string{}
	pending := make([]int, len(batches))
	for i := range pending {
		pending[i] = i
	}
	err := e.retry(ctx, "balance", func(ctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		in := make([]balance.Batch, len(pending))
		for j, i := range pending {
			in[j] = batches[i]
		}
		out, err := e.bal.Apply(ctx, in)
		if len(out) != len(in) {
			if err == nil {
				err = fmt.Errorf("%w: %d results for %d batches", balance.ErrUnavailable, len(out), len(in))
			}
			return err
		}
		var next []int
		var firstErr error
		var behind []string
		failed := false
		for j, i := range pending {
			r := out[j]
			failed = failed || r.Err != nil
			switch {
			case r.Err == nil:
				results[i] = r
			case fault.Retryable(r.Err):
				next = append(next, i)
				if firstErr == nil {
					firstErr = r.Err
				}
			case errors.Is(r.Err, balance.ErrBehind):
				behind = append(behind, batches[i].Subscription)
			case errors.Is(r.Err, balance.ErrUnknownSubscription):
				refused[i] = r.Err.Error()
			default:
				return r.Err // invalid batch: a bug; stop rather than skip
			}
		}
		if len(behind) > 0 {
			return &errRepair{subs: behind, why: "a ledger behind what this engine saw"}
		}
		if err != nil && !failed {
			// A failure no batch owns: apply them all again (what ran is
			// replayed from the journal), never go on without it.
			return err
		}
		pending = next
		return firstErr
	})
	return results, refused, err
}

// committedBefore is a lower bound of the partition's committed offset that
// is at or below every offset this engine may still have to redeliver: what
// it committed itself, or else the first offset it fetched from the
// partition (the group resumes at the committed offset). Not the batch's
// own offsets: earlier batches may still be in flight, and their journaled
// results must survive until they are committed.
func (e *Engine) committedBefore(partition int, offset int64) int64 {
	e.nextMu.Lock()
	n, ok := e.next[partition]
	e.nextMu.Unlock()
	first, seen := e.firstSeen[partition]
	switch {
	case ok: // every batch in flight comes after the last one committed
		return min(n, offset)
	case seen:
		return min(first, offset)
	}
	return offset
}

// rowCounts are the per-batch outcomes for metrics.
type rowCounts struct {
	rated, applied, dupOffset, dupID int
}

// rows builds the archive rows of the applied events. A line applied now or
// earlier (redelivery, with its journaled result) is archived; a duplicate
// event id is not, since the first copy was.
func (e *Engine) rows(msgs []kafka.Message, events []rating.Event, lines []rating.Line, refs []eventRef,
	batches []balance.Batch, results []balance.BatchResult) ([]archive.RatedRow, []archive.LedgerRow, rowCounts) {
	now := e.cfg.Now().UTC()
	var c rowCounts
	usage := make([]archive.RatedRow, 0, len(lines))
	spans := make([][]usageSpan, len(batches))
	for bi := range batches {
		spans[bi] = usageSpans(&batches[bi], &results[bi])
	}
	slab := newDrawSlab(results)
	dims := newDimSlab(events, refs)
	for _, r := range refs {
		res := &results[r.batch]
		if res.Lines == nil { // refused batch
			continue
		}
		lr := &res.Lines[r.line]
		switch lr.Status {
		case balance.Applied:
			c.applied++
		case balance.DuplicateOffset:
			c.dupOffset++
			if !lr.Journaled {
				continue // committed and archived before; nothing to redo
			}
		default:
			c.dupID++
			continue
		}
		m, ev := &msgs[r.msg], &events[r.msg]
		drawn := drawnAt(spans[r.batch], m.Offset, ev.Timestamp, e.grace, now)
		split := newSplitter(lr)
		keys, values := dims.columns(ev)
		uk := 0
		for li := r.first; li < r.last; li++ {
			l := &lines[li]
			row := archive.RatedRow{
				EventID: ev.ID, Line: uint16(li - r.first), CustomerID: l.CustomerID, SubscriptionID: l.SubscriptionID,
				Feature: l.FeatureID, EventName: ev.Name, Quantity: e.dec.get(l.Quantity.Mant, int32(l.Quantity.Scale)),
				Credits: l.Credits, CreditCurrency: l.CreditCurrency, MoneyValue: e.dec.get(int64(l.Money), rating.MoneyScale), MoneyCurrency: l.MoneyCurrency,
				EventTime: drawn, RatedAt: now, Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset,
				DimKeys: keys, DimValues: values,
			}
			uniqueRow(&row, l, &uk, lr.Repeats)
			slab.take(&row, &split)
			usage = append(usage, row)
		}
	}
	customers := make([]string, len(batches))
	for _, r := range refs {
		if customers[r.batch] == "" {
			customers[r.batch] = lines[r.first].CustomerID
		}
	}
	var ledger []archive.LedgerRow
	for bi := range results {
		for _, en := range results[bi].Entries {
			ledger = append(ledger, accounts.LedgerRow(batches[bi].Subscription, customers[bi], en))
		}
	}
	return usage, ledger, c
}

func isUnknownSubscription(err error) bool {
	return errors.Is(err, rating.ErrNoActiveSubscription) || errors.Is(err, rating.ErrUnknownSubscription) ||
		errors.Is(err, rating.ErrSubscriptionNotActive) || errors.Is(err, rating.ErrSubscriptionEnded)
}
