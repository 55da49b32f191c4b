package balance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// Pending top-up statuses.
const (
	TopUpPending    = "pending"
	TopUpConfirming = "confirming" // claimed by a confirmation that is making its grant
	TopUpConfirmed  = "confirmed"
	TopUpFailed     = "failed"
	TopUpExpired    = "expired"
)

var (
	// ErrTopUpNotFound: no pending top-up of that id on the subscription.
	ErrTopUpNotFound = errors.New("balance: no such top-up")
	// ErrTopUpEnded: the top-up expired or its payment failed; it cannot
	// be confirmed (a *TopUpEndedError names which).
	ErrTopUpEnded = errors.New("balance: the top-up can no longer be confirmed")
)

// TopUpEndedError is a confirmation of a top-up that expired or failed.
type TopUpEndedError struct{ TopUp PendingTopUp }

func (e *TopUpEndedError) Error() string {
	return fmt.Sprintf("balance: top-up %s is %s and cannot be confirmed", e.TopUp.ID, e.TopUp.Status)
}

func (e *TopUpEndedError) Unwrap() error { return ErrTopUpEnded }

// PendingTopUp is a top-up waiting for (or done with) its payment.
type PendingTopUp struct {
	ID           string
	Subscription string
	Status       string
	Amount       credit.Amount
	Charge       decimal.Decimal
	Currency     string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	EndedAt      time.Time // confirmed, failed or expired
	Seq          int64     // confirmed: the ledger seq of its grant
	GrantID      string
	Reason       string // failed: why
	Key          string // the idempotency key it was created with (auto-recharge's tells its crossing)
}

// pendingRecord is topup.lua's JSON record.
type pendingRecord struct {
	FP       string `json:"fp"`
	Status   string `json:"status"`
	Amount   string `json:"amount"` // micro-credits
	Charge   string `json:"charge"`
	Currency string `json:"currency"`
	Minor    string `json:"minor"` // the charge in minor units
	Month    string `json:"month"`
	Created  string `json:"created"`
	Expires  string `json:"expires"`
	Ended    string `json:"ended,omitempty"`
	Seq      string `json:"seq,omitempty"`
	Grant    string `json:"grant,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Key      string `json:"key,omitempty"` // the idempotency key it was created with
}

// PendingRequest creates a top-up that waits TTL for its payment.
type PendingRequest struct {
	Key          string // idempotency key: the same key gives the same top-up
	Subscription string
	Amount       credit.Amount
	TTL          time.Duration
}

// PendingID is the id of the subscription's pending top-up of key.
func PendingID(sub, key string) string {
	h := sha256.Sum256([]byte(sub + "\x00" + key))
	return "tp_" + hex.EncodeToString(h[:12])
}

func (s *Store) topUpKeys(sub string) topUpKeys {
	return topUpKeys{subKeys: s.keys(sub), TopUps: s.prefix + "{" + sub + "}:tp"}
}

// dueKey indexes pending top-ups by expiry ("sub|id" scored by expiry ms)
// for the sweep; it is outside the subscription's slot, so it is written
// before the record and cleaned after it ends.
func (s *Store) dueKey() string { return s.prefix + "{topups}:due" }

// CreatePending creates a pending top-up: the plan's min/max apply and its
// amount and charge count against the month's purchase limit until it
// fails or expires. It reports whether it replayed an earlier request.
func (s *Store) CreatePending(ctx context.Context, r PendingRequest) (PendingTopUp, bool, error) {
	if err := validSub(r.Subscription); err != nil {
		return PendingTopUp{}, false, err
	}
	switch {
	case r.Key == "" || len(r.Key) > 200:
		return PendingTopUp{}, false, fmt.Errorf("%w: idempotency key is required (at most 200 bytes)", ErrInvalid)
	case r.Amount <= 0 || r.Amount > credit.MaxAmount:
		return PendingTopUp{}, false, fmt.Errorf("%w: amount %s", ErrInvalid, r.Amount)
	case r.TTL <= 0:
		return PendingTopUp{}, false, fmt.Errorf("%w: a pending top-up needs a time to wait", ErrInvalid)
	}
	vals, err := s.rc.HMGet(ctx, s.keys(r.Subscription).Account, "value", "currency").Result()
	if err != nil {
		return PendingTopUp{}, false, classify(err)
	}
	vs, _ := vals[0].(string)
	cur, _ := vals[1].(string)
	if vs == "" {
		return PendingTopUp{}, false, ErrUnknownSubscription
	}
	value, err := decimal.NewFromString(vs)
	if err != nil {
		return PendingTopUp{}, false, fmt.Errorf("balance: stored credit value %q: %w", vs, err)
	}
	now := s.now()
	charge := Charge(r.Amount, value, cur)
	id := PendingID(r.Subscription, r.Key)
	exp := now.Add(r.TTL)
	rec := pendingRecord{FP: fingerprint("pending", r.Amount.String()), Status: TopUpPending, Amount: strconv.FormatInt(int64(r.Amount), 10),
		Charge: charge.String(), Currency: cur, Minor: strconv.FormatInt(minor(charge, cur), 10), Month: period(now),
		Created: strconv.FormatInt(now.UnixMilli(), 10), Expires: strconv.FormatInt(exp.UnixMilli(), 10), Key: r.Key}
	body, _ := json.Marshal(rec)
	// indexed first: an index entry without a record is dropped by the sweep
	if err := s.rc.ZAdd(ctx, s.dueKey(), redis.Z{Score: float64(exp.UnixMilli()), Member: r.Subscription + "|" + id}).Err(); err != nil {
		return PendingTopUp{}, false, classify(err)
	}
	p, changed, err := s.topUpOp(ctx, r.Subscription, id, "create", rec.FP, string(body))
	if errors.Is(err, ErrPurchaseLimit) {
		var pl *PurchaseLimitError
		if errors.As(err, &pl) {
			pl.inCurrency(cur)
		}
	}
	if err != nil {
		if !errors.Is(err, ErrConflict) {
			s.rc.ZRem(ctx, s.dueKey(), r.Subscription+"|"+id)
		}
		return p, false, err
	}
	return p, !changed, nil
}

// PendingTopUp reads a top-up; a pending one past its expiry is expired
// (and its reservation given back) on the way.
func (s *Store) PendingTopUp(ctx context.Context, sub, id string) (PendingTopUp, error) {
	p, _, err := s.topUpOp(ctx, sub, id, "get")
	return p, err
}

// ExpirePending expires the top-up if it is pending and due; changed says
// this call did.
func (s *Store) ExpirePending(ctx context.Context, sub, id string) (PendingTopUp, bool, error) {
	p, changed, err := s.topUpOp(ctx, sub, id, "get")
	if err == nil && p.Status != TopUpPending && p.Status != TopUpConfirming {
		s.rc.ZRem(ctx, s.dueKey(), sub+"|"+id)
	}
	return p, changed && p.Status == TopUpExpired, err
}

// FailPending ends a pending top-up whose payment failed (declined): it
// gives back its reservation. changed says this call failed it; a top-up
// already confirmed or being confirmed is not failed.
func (s *Store) FailPending(ctx context.Context, sub, id, reason string) (PendingTopUp, bool, error) {
	p, changed, err := s.topUpOp(ctx, sub, id, "fail", reason)
	if err == nil && changed {
		s.rc.ZRem(ctx, s.dueKey(), sub+"|"+id)
	}
	return p, changed && p.Status == TopUpFailed, err
}

// ConfirmPending turns a pending top-up into credits: it claims it (so it
// can no longer expire or fail), makes its purchased grant (ledger key
// "pending:<id>", the charge recorded at creation, not counted again
// against the limit) and marks it confirmed. A confirmation interrupted
// by a crash is completed by the next one (or the sweep): every step is
// idempotent. res is the grant's change (Replayed when already made);
// an expired or failed top-up is a *TopUpEndedError.
func (s *Store) ConfirmPending(ctx context.Context, sub, id string) (PendingTopUp, ChangeResult, error) {
	p, _, err := s.topUpOp(ctx, sub, id, "claim")
	if err != nil {
		return p, ChangeResult{}, err
	}
	switch p.Status {
	case TopUpFailed, TopUpExpired:
		return p, ChangeResult{}, &TopUpEndedError{TopUp: p}
	case TopUpPending:
		return p, ChangeResult{}, fmt.Errorf("%w: top-up %s was not claimed", errUnexpectedScriptData, id)
	}
	charge := p.Charge
	res, err := s.TopUp(ctx, TopUpRequest{Key: "pending:" + id, Subscription: sub, Amount: p.Amount, reserved: true, charge: &charge})
	if err != nil {
		return p, res, err
	}
	if p.Status == TopUpConfirmed {
		res.Replayed = true
		return p, res, nil
	}
	p, _, err = s.topUpOp(ctx, sub, id, "done", strconv.FormatInt(res.Seq, 10), res.GrantID)
	if err == nil {
		s.rc.ZRem(ctx, s.dueKey(), sub+"|"+id)
	}
	return p, res, err
}

// DuePending lists up to limit top-ups whose expiry has passed and are
// not yet swept: pairs of subscription and id.
func (s *Store) DuePending(ctx context.Context, limit int64) ([][2]string, error) {
	ms, err := s.rc.ZRangeByScore(ctx, s.dueKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(s.nowMs(), 10), Count: limit}).Result()
	if err != nil {
		return nil, classify(err)
	}
	out := make([][2]string, 0, len(ms))
	for _, m := range ms {
		i := strings.LastIndexByte(m, '|')
		if i < 0 {
			s.rc.ZRem(ctx, s.dueKey(), m)
			continue
		}
		out = append(out, [2]string{m[:i], m[i+1:]})
	}
	return out, nil
}

// DropDue removes an index entry whose top-up does not exist.
func (s *Store) DropDue(ctx context.Context, sub, id string) error {
	return classify(s.rc.ZRem(ctx, s.dueKey(), sub+"|"+id).Err())
}

func (s *Store) topUpOp(ctx context.Context, sub, id, op string, args ...string) (PendingTopUp, bool, error) {
	if err := validSub(sub); err != nil {
		return PendingTopUp{}, false, err
	}
	if id == "" || len(id) > 64 {
		return PendingTopUp{}, false, ErrTopUpNotFound
	}
	argv := []any{s.nowMs(), s.grace, op, id, s.nowMs()}
	for _, a := range args {
		argv = append(argv, a)
	}
	v, err := s.run(ctx, topUpScript, s.topUpKeys(sub).list(), argv...)
	if err != nil {
		return PendingTopUp{}, false, err
	}
	r, ok := strs(v)
	if !ok || len(r) != 2 {
		return PendingTopUp{}, false, errUnexpectedScriptData
	}
	var rec pendingRecord
	if err := json.Unmarshal([]byte(r[1]), &rec); err != nil {
		return PendingTopUp{}, false, fmt.Errorf("%w: top-up record: %v", errUnexpectedScriptData, err)
	}
	p, err := rec.topUp(sub, id)
	return p, r[0] == "N", err
}

func (r pendingRecord) topUp(sub, id string) (PendingTopUp, error) {
	p := PendingTopUp{ID: id, Subscription: sub, Status: r.Status, Currency: r.Currency, GrantID: r.Grant, Reason: r.Reason, Key: r.Key}
	amt, err := strconv.ParseInt(r.Amount, 10, 64)
	if err != nil {
		return p, fmt.Errorf("%w: top-up amount %q", errUnexpectedScriptData, r.Amount)
	}
	p.Amount = credit.Amount(amt)
	if p.Charge, err = decimal.NewFromString(r.Charge); err != nil {
		return p, fmt.Errorf("%w: top-up charge %q", errUnexpectedScriptData, r.Charge)
	}
	msTime := func(v string) time.Time {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || v == "" {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	p.CreatedAt, p.ExpiresAt, p.EndedAt = msTime(r.Created), msTime(r.Expires), msTime(r.Ended)
	if r.Seq != "" {
		p.Seq, _ = strconv.ParseInt(r.Seq, 10, 64)
	}
	return p, nil
}

// AccountCustomer is the customer of the subscription's account.
func (s *Store) AccountCustomer(ctx context.Context, sub string) (string, error) {
	c, err := s.rc.HGet(ctx, s.keys(sub).Account, "customer").Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrUnknownSubscription
	}
	return c, classify(err)
}

var (
	jsonMarshal   = json.Marshal
	jsonUnmarshal = json.Unmarshal
)

// PendingTopUps lists the subscription's top-ups that waited (or wait)
// for their payment, in no order. A pending one past its expiry is shown
// expired (the sweep or the next read of it ends it for good).
func (s *Store) PendingTopUps(ctx context.Context, sub string) ([]PendingTopUp, error) {
	if err := validSub(sub); err != nil {
		return nil, err
	}
	m, err := s.rc.HGetAll(ctx, s.topUpKeys(sub).TopUps).Result()
	if err != nil {
		return nil, classify(err)
	}
	if len(m) == 0 {
		if n, err := s.rc.Exists(ctx, s.keys(sub).Account).Result(); err != nil {
			return nil, classify(err)
		} else if n == 0 {
			return nil, ErrUnknownSubscription
		}
	}
	now := s.now()
	out := make([]PendingTopUp, 0, len(m))
	for id, raw := range m {
		var rec pendingRecord
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			return nil, fmt.Errorf("%w: top-up record: %v", errUnexpectedScriptData, err)
		}
		p, err := rec.topUp(sub, id)
		if err != nil {
			return nil, err
		}
		if p.Status == TopUpPending && !now.Before(p.ExpiresAt) {
			p.Status, p.EndedAt = TopUpExpired, p.ExpiresAt
		}
		out = append(out, p)
	}
	return out, nil
}
