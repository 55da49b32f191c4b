package bench

import (
	"context"
	"fmt"
	"sync"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// Exactness is the exactly-once verdict of an e2e drain, computed from the
// stores against what the generator sent: Apply's statuses cannot give it
// (a replay after a crash or a Redis restart answers DuplicateOffset for an
// event that counted once).
type Exactness struct {
	Exact bool `json:"exact"`
	// What the unique events of this drain must draw, and of every drain of
	// the world so far (Redis and the ledger are cumulative).
	WantEvents    int64         `json:"want_events"`
	WantMicro     credit.Amount `json:"want_micro"`
	WantAllEvents int64         `json:"want_all_events"`
	WantAllMicro  credit.Amount `json:"want_all_micro"`
	// Redis: initial grant − balance + unfunded, summed over subscriptions.
	RedisMicro credit.Amount `json:"redis_micro"`
	// rated_usage FINAL rows of this drain's topic, distinct event ids, credits.
	ArchivedRows  int64         `json:"archived_rows"`
	ArchivedIDs   int64         `json:"archived_ids"`
	ArchivedMicro credit.Amount `json:"archived_micro"`
	// credit_ledger FINAL usage entries: events and credits drawn from grants
	// (unfunded usage is not drawn), every drain so far.
	LedgerEvents int64         `json:"ledger_events"`
	LedgerMicro  credit.Amount `json:"ledger_micro"`
	DeadLetters  int64         `json:"dead_letters"`
	// Subscriptions whose figures differ from the expected, and the first.
	Mismatched int    `json:"mismatched_subscriptions"`
	First      string `json:"first_mismatch,omitempty"`
}

// verifyExact compares Redis balances, the rated_usage archive of topic and
// the credit ledger with the generator's expectations, per subscription.
// run is this drain's expectation; w.Want must already include it.
func verifyExact(ctx context.Context, w *World, topic string, run []Usage, dead int64) (*Exactness, error) {
	x := &Exactness{DeadLetters: dead}
	n := len(w.Subs)
	idx := make(map[string]int, n)
	for i, s := range w.Subs {
		idx[s] = i
		x.WantEvents += run[i].Events
		x.WantMicro += run[i].Micro
		x.WantAllEvents += w.Want[i].Events
		x.WantAllMicro += w.Want[i].Micro
	}
	bad := make([]string, n)
	miss := func(i int, f string, args ...any) {
		if bad[i] == "" {
			bad[i] = w.Subs[i] + ": " + fmt.Sprintf(f, args...)
		}
	}

	// Redis, concurrently: one balance read each.
	consumed := make([]credit.Amount, n)
	funded := make([]credit.Amount, n)
	errc := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			b, err := w.Balances.Balance(ctx, w.Subs[i])
			if err != nil {
				errc <- fmt.Errorf("balance of %s: %w", w.Subs[i], err)
				return
			}
			funded[i] = w.Initial[i] - b.Total
			consumed[i] = funded[i] + b.Unfunded
		}(i)
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	for i := range n {
		x.RedisMicro += consumed[i]
		if consumed[i] != w.Want[i].Micro {
			miss(i, "Redis drew %s credits, want %s", consumed[i], w.Want[i].Micro)
		}
	}

	// The archive of this drain.
	seen := make([]bool, n)
	rows, err := w.Conn.Query(ctx, `SELECT subscription_id, count(), uniqExact(event_id), sum(toDecimal128(credits_micro, 0))
		FROM rated_usage FINAL WHERE source_topic = ? GROUP BY subscription_id`, topic)
	if err != nil {
		return nil, fmt.Errorf("rated_usage: %w", err)
	}
	for rows.Next() {
		var sub string
		var cnt, ids uint64
		var sum decimal.Decimal
		if err := rows.Scan(&sub, &cnt, &ids, &sum); err != nil {
			rows.Close()
			return nil, fmt.Errorf("rated_usage: %w", err)
		}
		micro, err := credit.FromDecimal(sum.Shift(-credit.Scale))
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("rated_usage credits of %s: %w", sub, err)
		}
		x.ArchivedRows += int64(cnt)
		x.ArchivedIDs += int64(ids)
		x.ArchivedMicro += micro
		i, ok := idx[sub]
		if !ok {
			rows.Close()
			return nil, fmt.Errorf("rated_usage has rows of an unknown subscription %q", sub)
		}
		seen[i] = true
		if int64(cnt) != run[i].Events || ids != cnt || micro != run[i].Micro {
			miss(i, "archived %d rows of %d ids for %s credits, want %d for %s", cnt, ids, micro, run[i].Events, run[i].Micro)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rated_usage: %w", err)
	}

	// The ledger (every drain so far): usage entries' events, and the
	// credits they drew must be what the balance lost.
	ledgerSeen := make([]bool, n)
	rows, err = w.Conn.Query(ctx, `SELECT subscription_id, sum(event_count), sum(toDecimal128(amount_micro, 0))
		FROM credit_ledger FINAL WHERE kind = 'usage' GROUP BY subscription_id`)
	if err != nil {
		return nil, fmt.Errorf("credit_ledger: %w", err)
	}
	for rows.Next() {
		var sub string
		var events uint64
		var sum decimal.Decimal
		if err := rows.Scan(&sub, &events, &sum); err != nil {
			rows.Close()
			return nil, fmt.Errorf("credit_ledger: %w", err)
		}
		drawn, err := credit.FromDecimal(sum.Neg().Shift(-credit.Scale))
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("credit_ledger amount of %s: %w", sub, err)
		}
		i, ok := idx[sub]
		if !ok {
			continue
		}
		ledgerSeen[i] = true
		x.LedgerEvents += int64(events)
		x.LedgerMicro += drawn
		if int64(events) != w.Want[i].Events || drawn != funded[i] {
			miss(i, "ledger has %d events drawing %s credits, want %d events and the balance's %s", events, drawn, w.Want[i].Events, funded[i])
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("credit_ledger: %w", err)
	}
	for i := range n {
		if !seen[i] && run[i].Events > 0 {
			miss(i, "no archived usage, want %d events", run[i].Events)
		}
		if !ledgerSeen[i] && w.Want[i].Events > 0 {
			miss(i, "no usage in the ledger, want %d events", w.Want[i].Events)
		}
		if bad[i] != "" {
			x.Mismatched++
			if x.First == "" {
				x.First = bad[i]
			}
		}
	}
	x.Exact = x.Mismatched == 0 && dead == 0
	return x, nil
}
