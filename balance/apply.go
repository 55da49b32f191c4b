package balance

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/credit"
)

// maxOffset keeps offsets exact in Lua doubles.
const maxOffset = 1<<53 - 1

func (b *Batch) validate() error {
	if err := validSub(b.Subscription); err != nil {
		return err
	}
	if len(b.Lines) == 0 {
		return fmt.Errorf("%w: empty batch", ErrInvalid)
	}
	if strings.ContainsAny(b.Topic, ":{}") {
		return fmt.Errorf("%w: topic %q", ErrInvalid, b.Topic)
	}
	prev := int64(-1)
	for i, l := range b.Lines {
		switch {
		case l.EventID == "":
			return fmt.Errorf("%w: line %d: empty event id", ErrInvalid, i)
		case l.Credits < 0 || l.Credits > credit.MaxAmount:
			return fmt.Errorf("%w: line %d: credits %s out of range", ErrInvalid, i, l.Credits)
		case l.Time.UnixMilli() < 0:
			return fmt.Errorf("%w: line %d: timestamp before 1970", ErrInvalid, i)
		case b.Topic != "" && (l.Offset <= prev || l.Offset > maxOffset):
			return fmt.Errorf("%w: line %d: offset %d not increasing", ErrInvalid, i, l.Offset)
		case len(l.Unique) > MaxUniqueParts:
			return fmt.Errorf("%w: line %d: %d UNIQUE_COUNT parts, at most %d", ErrInvalid, i, len(l.Unique), MaxUniqueParts)
		}
		var sum credit.Amount
		for _, u := range l.Unique {
			sum += u.Credits
			if u.Meter == "" || u.Credits < 0 || !u.PeriodEnd.After(u.Period) || sum > l.Credits {
				return fmt.Errorf("%w: line %d: bad UNIQUE_COUNT part %+v", ErrInvalid, i, u)
			}
		}
		prev = l.Offset
	}
	return nil
}

func (b *Batch) source() string {
	if b.Topic == "" {
		return ""
	}
	return b.Topic + "/" + strconv.FormatInt(int64(b.Partition), 10)
}

// Apply draws the lines of each batch from its subscription's grants: one
// atomic script call per batch, all calls pipelined in one round trip.
// Batches are independent: results[i].Err reports a refused batch, and the
// returned error joins them. A transport failure fails every batch with an
// error wrapping ErrUnavailable; re-applying the same batches is safe.
func (s *Store) Apply(ctx context.Context, batches []Batch) ([]BatchResult, error) {
	results := make([]BatchResult, len(batches))
	now := s.nowMs()
	tb := now / s.window
	var todo []int
	subs := make([]string, 0, len(batches))
	for i := range batches {
		results[i].Subscription = batches[i].Subscription
		if err := batches[i].validate(); err != nil {
			results[i].Err = err
			continue
		}
		todo = append(todo, i)
		subs = append(subs, batches[i].Subscription)
	}
	lay, err := s.layouts(ctx, subs, tb)
	if err != nil {
		for _, i := range todo {
			results[i].Err = err
		}
		return results, err
	}
	// A script refuses a call whose declared dedupe sets are not those of
	// the current layout (another node moved it on) and reports the layout:
	// such batches go again, a few times.
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == 4 {
			for _, i := range todo {
				results[i].Err = fmt.Errorf("%w: the dedupe layout of %s kept changing", ErrUnavailable, batches[i].Subscription)
			}
			break
		}
		cmds := s.runApply(ctx, batches, todo, lay, now)
		var again []int
		for j, i := range todo {
			b := &batches[i]
			if l, ok := layoutReply(cmds[j], tb); ok {
				lay[b.Subscription] = l
				s.remember(b.Subscription, l)
				again = append(again, i)
				continue
			}
			results[i] = parseApply(*b, cmds[j], tb, s)
			s.noteLow(ctx, b.Subscription, results[i].Crossing)
		}
		todo = again
	}
	var errs []error
	for i := range results {
		if results[i].Err != nil {
			errs = append(errs, fmt.Errorf("batch %d (%s): %w", i, batches[i].Subscription, results[i].Err))
		}
	}
	if err := s.attachEntries(ctx, batches, results); err != nil {
		errs = append(errs, err)
	}
	return results, errors.Join(errs...)
}

// runApply runs the script for batches[todo], pipelined, loading it if the
// server does not know it (restart, failover).
func (s *Store) runApply(ctx context.Context, batches []Batch, todo []int, lay map[string]ddLayout, now int64) []*redis.Cmd {
	pipe := s.rc.Pipeline()
	cmds := make([]*redis.Cmd, len(todo))
	keys := make([][]string, len(todo))
	argv := make([][]any, len(todo))
	var bits []int64
	for j, i := range todo {
		keys[j], argv[j], bits = s.applyArgs(&batches[i], lay[batches[i].Subscription], now, bits)
		cmds[j] = applyScript.EvalSha(ctx, pipe, keys[j], argv[j]...)
	}
	_, _ = pipe.Exec(ctx)
	var retry []int
	for j, c := range cmds {
		if c.Err() != nil && strings.HasPrefix(c.Err().Error(), "NOSCRIPT") {
			retry = append(retry, j)
		}
	}
	if len(retry) > 0 {
		if err := applyScript.Load(ctx, s.rc).Err(); err == nil {
			pipe = s.rc.Pipeline()
			for _, j := range retry {
				cmds[j] = applyScript.EvalSha(ctx, pipe, keys[j], argv[j]...)
			}
			_, _ = pipe.Exec(ctx)
		}
	}
	return cmds
}

// applyArgs are the KEYS and ARGV of apply.lua for b; bits is scratch.
func (s *Store) applyArgs(b *Batch, l ddLayout, now int64, bits []int64) ([]string, []any, []int64) {
	cur, prev := l.expect()
	pfx := s.ddPrefix(b.Subscription)
	args := make([]any, 0, 10+5*len(b.Lines))
	args = append(args, now, s.grace, s.window, b.source(), pfx, b.Committed, b.Expect, cur, prev, "")
	bits = bits[:0]
	for _, ln := range b.Lines {
		fp, bb := idHash(ln.EventID)
		bits = append(bits, bb)
		args = append(args, fp, bb, ln.Offset, ln.Time.UnixMilli(), int64(ln.Credits))
	}
	keys := ddKeys(s.applyKeys(b).list(), pfx, l.tb, cur, prev, bits)
	keys, args[9] = s.uniqueArgs(keys, b) // ARGV[10]: the UNIQUE_COUNT parts (unique.lua)
	return keys, args, bits
}

// layoutReply reads a script's refusal for a stale dedupe layout.
func layoutReply(c *redis.Cmd, tb int64) (ddLayout, bool) {
	v, err := c.Result()
	if err != nil {
		return ddLayout{}, false
	}
	r, ok := strs(v)
	if !ok || len(r) != 3 || r[0] != "L" {
		return ddLayout{}, false
	}
	return ddLayout{tb: tb, cur: r[1], prev: r[2]}, true
}

// applyKeys are the subscription's keys and its journal for the batch's source.
func (s *Store) applyKeys(b *Batch) applyKeys {
	return applyKeys{subKeys: s.keys(b.Subscription), Journal: s.journalKey(b.Subscription, b.source())}
}

// attachEntries reads, in one pipelined round trip, the ledger entries each
// successful batch wrote (or, on a replay, first wrote), so the caller can
// archive them with the lines. A batch whose entries cannot be read gets
// the error in its result: its balance change is made, and applying it
// again replays it and reads them again.
func (s *Store) attachEntries(ctx context.Context, batches []Batch, results []BatchResult) error {
	pipe := s.rc.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(results))
	for i := range results {
		r := &results[i]
		if r.Err != nil || r.FirstSeq <= 0 {
			continue
		}
		cmds[i] = pipe.XRange(ctx, s.keys(batches[i].Subscription).Ledger, strconv.FormatInt(r.FirstSeq, 10)+"-0", strconv.FormatInt(r.LastSeq, 10)+"-0")
	}
	if pipe.Len() == 0 {
		return nil
	}
	_, _ = pipe.Exec(ctx)
	var errs []error
	for i, c := range cmds {
		if c == nil {
			continue
		}
		msgs, err := c.Result()
		var es []Entry
		if err == nil {
			es, err = entries(msgs)
		}
		if err != nil {
			results[i].Err = classify(err)
			results[i].Lines, results[i].Entries = nil, nil
			errs = append(errs, fmt.Errorf("batch %d (%s): ledger entries: %w", i, batches[i].Subscription, results[i].Err))
			continue
		}
		if n := int64(len(es)); n != results[i].LastSeq-results[i].FirstSeq+1 {
			results[i].Err = fmt.Errorf("%w: %d ledger entries for seq %d..%d", ErrBehind, n, results[i].FirstSeq, results[i].LastSeq)
			results[i].Lines = nil
			errs = append(errs, results[i].Err)
			continue
		}
		results[i].Entries = es
	}
	return errors.Join(errs...)
}

// reply reads a script's reply items where they are: integers come back
// as int64 and strings as strings, so nothing is formatted to be parsed again
// (this runs for every applied line).
type reply []any

func (r reply) str(i int) (string, bool) {
	switch t := r[i].(type) {
	case string:
		return t, true
	case int64:
		return strconv.FormatInt(t, 10), true
	}
	return "", false
}

func (r reply) int(i int) (int64, bool) {
	switch t := r[i].(type) {
	case int64:
		return t, true
	case string:
		n, err := strconv.ParseInt(t, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// applyHead is the number of reply items before the lines': balance, debt,
// crossing, low, first and last seq, the two dedupe metas, the balance
// before the lines.
const applyHead = 9

func parseApply(b Batch, c *redis.Cmd, tb int64, s *Store) BatchResult {
	res := BatchResult{Subscription: b.Subscription}
	v, err := c.Result()
	if err != nil {
		res.Err = classify(err)
		return res
	}
	r, ok := v.([]any)
	if !ok || len(r) < applyHead {
		res.Err = errUnexpectedScriptData
		return res
	}
	rp := reply(r)
	var head [8]string
	for i := range head {
		if head[i], ok = rp.str(i); !ok {
			res.Err = errUnexpectedScriptData
			return res
		}
	}
	s.remember(b.Subscription, ddLayout{tb: tb, cur: head[6], prev: head[7]})
	var e1, e2 error
	res.Balance, e1 = amount(head[0])
	res.Debt, e2 = amount(head[1])
	res.Crossing, res.Low = LowChange(head[2]), head[3] == "1"
	res.FirstSeq, _ = strconv.ParseInt(head[4], 10, 64)
	res.LastSeq, _ = strconv.ParseInt(head[5], 10, 64)
	if err := errors.Join(e1, e2); err != nil {
		res.Err = err
		return res
	}
	bal, ok := rp.int(8) // the balance before the lines
	if !ok {
		res.Err = errUnexpectedScriptData
		return res
	}
	res.Lines = make([]LineResult, 0, len(b.Lines))
	p := applyHead
	bad := func() BatchResult { res.Err = errUnexpectedScriptData; res.Lines = nil; return res }
	for li := range b.Lines {
		if p >= len(r) {
			return bad()
		}
		st, ok := r[p].(string)
		if !ok || len(st) != 1 {
			return bad()
		}
		lr := LineResult{Status: LineStatus(st[0])}
		p++
		if lr.Status == appliedOneGrant {
			// drawn wholly from one grant: its credits, the balance less them
			g, ok := r[p].(string)
			if !ok {
				return bad()
			}
			p++
			c := b.Lines[li].Credits
			bal -= int64(c)
			lr.Status, lr.Balance, lr.Draws = Applied, credit.Amount(bal), []Draw{{Grant: g, Amount: c}}
			res.Lines = append(res.Lines, lr)
			continue
		}
		if lr.Status == replayed {
			lr.Status, lr.Journaled = DuplicateOffset, true
		}
		if lr.Status == Applied || lr.Journaled {
			if p+4 > len(r) {
				return bad()
			}
			after, ok1 := rp.int(p)
			unf, ok2 := rp.int(p + 1)
			over, ok3 := rp.int(p + 2)
			n, ok4 := rp.int(p + 3)
			if !ok1 || !ok2 || !ok3 || !ok4 || n < 0 || p+4+2*int(n) > len(r) {
				return bad()
			}
			lr.Balance, lr.Unfunded, lr.Overage = credit.Amount(after), credit.Amount(unf), credit.Amount(over)
			if lr.Status == Applied {
				bal = int64(lr.Balance) // the next 'a' line's balance follows from it
			}
			p += 4
			if n > 0 {
				lr.Draws = make([]Draw, 0, n)
			}
			for j := 0; j < int(n); j++ {
				g, ok1 := r[p].(string)
				a, ok2 := rp.int(p + 1)
				if !ok1 || !ok2 {
					return bad()
				}
				p += 2
				if g == uniqueDraw { // the line's UNIQUE_COUNT repeats, not a grant
					lr.Repeats = uint64(a)
					continue
				}
				lr.Draws = append(lr.Draws, Draw{Grant: g, Amount: credit.Amount(a)})
			}
		}
		res.Lines = append(res.Lines, lr)
	}
	if p != len(r) {
		return bad()
	}
	return res
}

// snapshot reads a subscription's account and live grants in one round trip.
func (s *Store) snapshot(ctx context.Context, sub string) (map[string]string, *book, error) {
	if err := validSub(sub); err != nil {
		return nil, nil, err
	}
	k := s.keys(sub)
	pipe := s.rc.Pipeline()
	acct := pipe.HGetAll(ctx, k.Account)
	grants := pipe.HGetAll(ctx, k.Grants)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, classify(err)
	}
	a := acct.Val()
	if a["seq"] == "" {
		return nil, nil, ErrUnknownSubscription
	}
	bk := &book{Grace: s.grace}
	var err error
	if bk.Debt, err = amount(a["debt"]); err != nil {
		return nil, nil, err
	}
	for id, v := range grants.Val() {
		g, err := parseBucket(id, v)
		if err != nil {
			return nil, nil, err
		}
		bk.Grants = append(bk.Grants, g)
	}
	bk.sort()
	return a, bk, nil
}

func parseBucket(id, v string) (*bucket, error) {
	p := strings.SplitN(v, "|", 7)
	if len(p) != 7 {
		return nil, fmt.Errorf("%w: grant %s %q", errUnexpectedScriptData, id, v)
	}
	var n [5]int64
	for i := range n {
		x, err := strconv.ParseInt(p[i+1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: grant %s %q", errUnexpectedScriptData, id, v)
		}
		n[i] = x
	}
	return &bucket{ID: id, Type: GrantType(p[0]), Amount: credit.Amount(n[0]), Remaining: credit.Amount(n[1]),
		Effective: n[2], Expires: n[3], Seq: n[4], CostBasis: p[6]}, nil
}

// Balance reports the subscription's balance, debt, unfunded usage and
// live grants in burn-down order. Grants past expiry but within grace
// still count in Total until their breakage is recorded.
func (s *Store) Balance(ctx context.Context, sub string) (BalanceView, error) {
	a, bk, err := s.snapshot(ctx, sub)
	if err != nil {
		return BalanceView{}, err
	}
	now := s.nowMs()
	v := BalanceView{Subscription: sub, Total: bk.balance(), Available: bk.available(now), Debt: bk.Debt,
		Low: a["low"] == "1", Policy: Policy(a["policy"])}
	if v.Unfunded, err = amount(a["unf"]); err != nil {
		return BalanceView{}, err
	}
	if v.DebtLimit, err = debtLimit(a); err != nil {
		return BalanceView{}, err
	}
	if b := a["base"]; b != "" {
		// A restored account: its ledger up to base lives only in the archive.
		if v.LedgerBase, err = strconv.ParseInt(b, 10, 64); err != nil {
			return BalanceView{}, fmt.Errorf("%w: base %q", errUnexpectedScriptData, b)
		}
		if v.BaseBalance, err = amount(a["basebal"]); err != nil {
			return BalanceView{}, err
		}
	}
	for _, g := range bk.Grants {
		gv := GrantView{ID: g.ID, Type: g.Type, Amount: g.Amount, Remaining: g.Remaining,
			EffectiveAt: time.UnixMilli(g.Effective).UTC(), CostBasis: g.CostBasis}
		if g.Expires != never {
			gv.ExpiresAt = time.UnixMilli(g.Expires).UTC()
		}
		v.Grants = append(v.Grants, gv)
	}
	// No write here: the low set is repaired by RepairLow, never on reads.
	return v, nil
}

// Check answers whether sub may spend amount now from its available
// credits (one round trip). Under the overage policy usage is recorded
// anyway; Allowed still says whether credits cover it.
func (s *Store) Check(ctx context.Context, sub string, amt credit.Amount) (CheckResult, error) {
	if amt < 0 || amt > credit.MaxAmount {
		return CheckResult{}, fmt.Errorf("%w: amount %s", ErrInvalid, amt)
	}
	a, bk, err := s.snapshot(ctx, sub)
	if err != nil {
		return CheckResult{}, err
	}
	av := bk.available(s.nowMs())
	r := CheckResult{Available: av, Spendable: av, Policy: Policy(a["policy"])}
	if r.DebtLimit, err = debtLimit(a); err != nil {
		return CheckResult{}, err
	}
	if r.DebtLimit != nil && r.Policy == Overage {
		r.Spendable = av + *r.DebtLimit // what apply.lua's debt_limit lets usage take
	}
	r.Allowed = amt <= r.Spendable
	return r, nil
}

// Ledger returns up to limit entries with sequence number >= from, in order.
func (s *Store) Ledger(ctx context.Context, sub string, from int64, limit int) ([]Entry, error) {
	if err := validSub(sub); err != nil {
		return nil, err
	}
	if from < 1 {
		from = 1
	}
	if limit <= 0 {
		limit = 1000
	}
	msgs, err := s.rc.XRangeN(ctx, s.keys(sub).Ledger, strconv.FormatInt(from, 10)+"-0", "+", int64(limit)).Result()
	if err != nil {
		return nil, classify(err)
	}
	return entries(msgs)
}

// entries parses ledger stream messages.
func entries(msgs []redis.XMessage) ([]Entry, error) {
	var err error
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		e := Entry{Fields: map[string]string{}}
		seqStr, _, _ := strings.Cut(m.ID, "-")
		e.Seq, _ = strconv.ParseInt(seqStr, 10, 64)
		for k, v := range m.Values {
			sv, _ := v.(string)
			switch k {
			case "k":
				e.Kind = sv
			case "a":
				e.Amount, err = amount(sv)
			case "b":
				e.Balance, err = amount(sv)
			case "t":
				var t int64
				t, err = strconv.ParseInt(sv, 10, 64)
				e.Time = time.UnixMilli(t).UTC()
			case "g":
				e.Grant = sv
			case "n":
				e.Events, err = strconv.ParseInt(sv, 10, 64)
			case "u":
				e.Unfunded, err = amount(sv)
			case "s":
				e.Snapshot = sv
			default:
				e.Fields[k] = sv
			}
			if err != nil {
				return nil, fmt.Errorf("%w: ledger %s field %s", errUnexpectedScriptData, m.ID, k)
			}
		}
		out = append(out, e)
	}
	return out, nil
}
