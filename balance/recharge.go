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

// AutoRecharge is a subscription's automatic recharge: when its available
// balance is below Threshold, buy Amount (a top-up).
type AutoRecharge struct {
	Enabled   bool
	Threshold credit.Amount
	Amount    credit.Amount
	Source    string // "plan" (AccountSpec) or "subscription" (SetAutoRecharge)
}

// SetAutoRecharge overrides the plan's auto-recharge for one subscription;
// nil goes back to the plan's.
func (s *Store) SetAutoRecharge(ctx context.Context, sub string, o *AutoRecharge) error {
	if err := validSub(sub); err != nil {
		return err
	}
	k := s.keys(sub).Account
	if n, err := s.rc.Exists(ctx, k).Result(); err != nil {
		return classify(err)
	} else if n == 0 {
		return ErrUnknownSubscription
	}
	if o == nil {
		return classify(s.rc.HDel(ctx, k, "aro").Err())
	}
	if o.Enabled && (o.Threshold <= 0 || o.Amount <= 0 || !o.Threshold.Valid() || !o.Amount.Valid()) {
		return fmt.Errorf("%w: auto-recharge needs a positive threshold and amount", ErrInvalid)
	}
	v := "off"
	if o.Enabled {
		v = strconv.FormatInt(int64(o.Threshold), 10) + "|" + strconv.FormatInt(int64(o.Amount), 10)
	}
	return classify(s.rc.HSet(ctx, k, "aro", v).Err())
}

// AutoRecharge is the subscription's auto-recharge: its override, else its
// plan's.
func (s *Store) AutoRecharge(ctx context.Context, sub string) (AutoRecharge, error) {
	if err := validSub(sub); err != nil {
		return AutoRecharge{}, err
	}
	v, err := s.rc.HMGet(ctx, s.keys(sub).Account, "seq", "aro", "arpt", "arpa").Result()
	if err != nil {
		return AutoRecharge{}, classify(err)
	}
	if v[0] == nil {
		return AutoRecharge{}, ErrUnknownSubscription
	}
	return autoRecharge(v), nil
}

// AutoRechargeEnabled reports, in one pipelined pass, which of subs have
// an auto-recharge enabled (the recharger's cheap first filter).
func (s *Store) AutoRechargeEnabled(ctx context.Context, subs []string) ([]bool, error) {
	p := s.rc.Pipeline()
	cmds := make([]*redis.SliceCmd, len(subs))
	for i, sub := range subs {
		cmds[i] = p.HMGet(ctx, s.keys(sub).Account, "seq", "aro", "arpt", "arpa")
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, classify(err)
	}
	out := make([]bool, len(subs))
	for i, c := range cmds {
		v, err := c.Result()
		if err != nil || v[0] == nil {
			continue
		}
		out[i] = autoRecharge(v).Enabled
	}
	return out, nil
}

// autoRecharge reads HMGET seq, aro, arpt, arpa.
func autoRecharge(v []any) AutoRecharge {
	str := func(x any) string { s, _ := x.(string); return s }
	thr, amt, src := str(v[2]), str(v[3]), "plan"
	if o := str(v[1]); o != "" {
		src = "subscription"
		thr, amt, _ = strings.Cut(o, "|")
		if o == "off" {
			thr, amt = "", ""
		}
	}
	r := AutoRecharge{Source: src}
	t, _ := strconv.ParseInt(thr, 10, 64)
	a, _ := strconv.ParseInt(amt, 10, 64)
	if t > 0 && a > 0 {
		r.Enabled, r.Threshold, r.Amount = true, credit.Amount(t), credit.Amount(a)
	}
	return r
}

// LastGrant is the ledger seq of the subscription's latest grant (top-up,
// included or promotional grant, positive adjustment) and the balance
// right after it; ok is false when none is recorded.
func (s *Store) LastGrant(ctx context.Context, sub string) (seq int64, after credit.Amount, ok bool, err error) {
	v, err := s.rc.HMGet(ctx, s.keys(sub).Account, "lastg", "lastb").Result()
	if err != nil {
		return 0, 0, false, classify(err)
	}
	g, _ := v[0].(string)
	b, _ := v[1].(string)
	if g == "" || b == "" {
		return 0, 0, false, nil
	}
	if seq, err = strconv.ParseInt(g, 10, 64); err != nil {
		return 0, 0, false, fmt.Errorf("%w: lastg %q", errUnexpectedScriptData, g)
	}
	after, err = amount(b)
	return seq, after, err == nil, err
}

// RechargeState is what the recharger recorded of a subscription's latest
// crossing (below its auto-recharge threshold since the grant at Crossing).
type RechargeState struct {
	Crossing    int64     `json:"crossing"`
	Status      string    `json:"status"` // pending (a pending top-up, TopUpID, in flight), done, failed
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitempty"`
	TopUpSeq    int64     `json:"topup_seq,omitempty"`
	TopUpID     string    `json:"topup_id,omitempty"` // the pending top-up (plans requiring payment confirmation)
	UpdatedAt   time.Time `json:"updated_at"`
}

func (s *Store) rechargeKey(sub string) string { return s.prefix + "{" + sub + "}:ar" }

// RechargeState reads the recorded state; ok is false when there is none.
func (s *Store) RechargeState(ctx context.Context, sub string) (RechargeState, bool, error) {
	if err := validSub(sub); err != nil {
		return RechargeState{}, false, err
	}
	v, err := s.rc.Get(ctx, s.rechargeKey(sub)).Result()
	if errors.Is(err, redis.Nil) {
		return RechargeState{}, false, nil
	}
	if err != nil {
		return RechargeState{}, false, classify(err)
	}
	var st RechargeState
	if err := jsonUnmarshal([]byte(v), &st); err != nil {
		return RechargeState{}, false, fmt.Errorf("%w: recharge state: %v", errUnexpectedScriptData, err)
	}
	return st, true, nil
}

// SaveRechargeState records st.
func (s *Store) SaveRechargeState(ctx context.Context, sub string, st RechargeState) error {
	b, err := jsonMarshal(st)
	if err != nil {
		return err
	}
	return classify(s.rc.Set(ctx, s.rechargeKey(sub), b, 0).Err())
}

// SwapRechargeState records next only if the recorded state is still prev
// (nil: none), so a recharger that read a stale state cannot overwrite a
// newer one (at most one pending top-up in flight); swapped says it did.
func (s *Store) SwapRechargeState(ctx context.Context, sub string, prev *RechargeState, next RechargeState) (bool, error) {
	if err := validSub(sub); err != nil {
		return false, err
	}
	b, err := jsonMarshal(next)
	if err != nil {
		return false, err
	}
	key := s.rechargeKey(sub)
	swapped := false
	err = s.rc.Watch(ctx, func(tx *redis.Tx) error {
		cur, err := tx.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
			if prev != nil {
				return nil
			}
		case err != nil:
			return err
		default:
			var c RechargeState
			if prev == nil || jsonUnmarshal([]byte(cur), &c) != nil || !c.same(*prev) {
				return nil
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, key, b, 0); return nil })
		swapped = err == nil
		return err
	}, key)
	if errors.Is(err, redis.TxFailedErr) {
		return false, nil
	}
	return swapped, classify(err)
}

func (a RechargeState) same(b RechargeState) bool {
	return a.Crossing == b.Crossing && a.Status == b.Status && a.Attempts == b.Attempts && a.TopUpID == b.TopUpID &&
		a.TopUpSeq == b.TopUpSeq && a.UpdatedAt.Equal(b.UpdatedAt)
}
