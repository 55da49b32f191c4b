// Package balance keeps prepaid credit balances in Redis: grants as
// buckets, burn-down of rated usage in batches, top-ups, adjustments,
// expiry and an immutable ledger. Every change is one atomic Lua script on
// the keys of one subscription (all carry the {subscription} hash tag).
// See README.md for the key layout and the exactly-once design.
package balance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/redisx"
)

// Options configure a Store.
type Options struct {
	Prefix       string        // key prefix, e.g. "cm:" (tests use a random one)
	DedupeWindow time.Duration // event ids are remembered between 1 and 2 windows; default 1h
	GraceWindow  time.Duration // late events draw from grants eligible then; expiry waits for it
	Now          func() time.Time
	// MaxGrants caps the live grants (remaining > 0) of a subscription: a
	// grant, top-up or positive adjustment beyond it is refused with
	// ErrTooManyGrants, so every script's work stays bounded. Default
	// DefaultMaxGrants. Credits the customer already owns (a confirmed
	// paid top-up, carried grants) pass it up to SystemGrantsFactor × it.
	MaxGrants int
}

// DefaultMaxGrants is the default cap on a subscription's live grants.
const DefaultMaxGrants = 100

// SystemGrantsFactor × MaxGrants is the hard ceiling of live grants for
// credits the customer already owns (a confirmed paid top-up, a plan
// change's carried grants), which the cap does not refuse.
const SystemGrantsFactor = 10

// Store is the Redis balance store. It is safe for concurrent use.
type Store struct {
	// layout caches each subscription's dedupe layout (ddLayout) as the
	// last script reported it, so KEYS can name the sets without a read.
	layout sync.Map
	rc     redis.UniversalClient
	prefix string
	window int64 // ms
	grace  int64 // ms
	now    func() time.Time
	grants int // MaxGrants
}

// New validates the options and returns a Store.
func New(rc redis.UniversalClient, o Options) (*Store, error) {
	if rc == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalid)
	}
	if o.DedupeWindow == 0 {
		o.DedupeWindow = time.Hour
	}
	if o.DedupeWindow < time.Second {
		return nil, fmt.Errorf("%w: dedupe window %s below 1s", ErrInvalid, o.DedupeWindow)
	}
	if o.GraceWindow < 0 {
		return nil, fmt.Errorf("%w: negative grace window", ErrInvalid)
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("%w: prefix %q contains a brace", ErrInvalid, o.Prefix)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxGrants == 0 {
		o.MaxGrants = DefaultMaxGrants
	}
	if o.MaxGrants < 1 {
		return nil, fmt.Errorf("%w: max grants %d below 1", ErrInvalid, o.MaxGrants)
	}
	return &Store{rc: rc, prefix: o.Prefix, window: o.DedupeWindow.Milliseconds(), grace: o.GraceWindow.Milliseconds(), now: o.Now,
		grants: o.MaxGrants}, nil
}

// GraceWindow is the window late usage draws within; the engine archives
// each line at the time it was drawn at, clamped with it.
func (s *Store) GraceWindow() time.Duration { return time.Duration(s.grace) * time.Millisecond }

func (s *Store) ddPrefix(sub string) string { return s.prefix + "{" + sub + "}:d:" }

// LowShards is the number of sets the low set is sharded over.
const LowShards = 16

// lowKey is the shard of the low set holding sub: P{low:N}, each shard its
// own hash tag, so no single key (or Cluster slot) takes every crossing.
func (s *Store) lowKey(sub string) string {
	h := fnv.New32a()
	h.Write([]byte(sub))
	return s.lowShard(int(h.Sum32() % LowShards))
}

func (s *Store) lowShard(n int) string { return s.prefix + "{low:" + strconv.Itoa(n) + "}" }

func (s *Store) nowMs() int64 { return s.now().UnixMilli() }

func validSub(sub string) error {
	if sub == "" || len(sub) > 200 || strings.ContainsAny(sub, "{}") {
		return fmt.Errorf("%w: subscription id %q", ErrInvalid, sub)
	}
	return nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return never
	}
	return t.UnixMilli()
}

// classify maps a Redis or script error to the package's sentinels.
func classify(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "CMUNKNOWN"):
		return fmt.Errorf("%w: %s", ErrUnknownSubscription, msg)
	case strings.HasPrefix(msg, "CMCONFLICT"):
		return fmt.Errorf("%w: %s", ErrConflict, msg)
	case strings.HasPrefix(msg, "CMBELOWMIN"):
		return fmt.Errorf("%w: %s", ErrBelowMinimum, msg)
	case strings.HasPrefix(msg, "CMABOVEMAX"):
		return fmt.Errorf("%w: %s", ErrAboveMaximum, msg)
	case strings.HasPrefix(msg, "CMRANGE"):
		return fmt.Errorf("%w: %s", ErrOutOfRange, msg)
	case strings.HasPrefix(msg, "CMNOTOPUP"):
		return ErrTopUpNotFound
	case strings.HasPrefix(msg, "CMPURCHASELIMIT"):
		return purchaseLimitError(msg)
	case strings.HasPrefix(msg, "CMSTALE"):
		return errStaleCreditValue
	case strings.HasPrefix(msg, "CMBEHIND"):
		return fmt.Errorf("%w: %s", ErrBehind, msg)
	case strings.HasPrefix(msg, "CMINVARIANT"):
		return fmt.Errorf("%w: %s", ErrInvariant, msg)
	case strings.HasPrefix(msg, "CMINVALID"):
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	if redisx.Unavailable(err) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return fmt.Errorf("balance: %w", err)
}

// run runs a script, loading it on NOSCRIPT.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	v, err := sc.Run(ctx, s.rc, keys, args...).Result()
	return v, classify(err)
}

// OpenAccount creates the subscription's account or updates its plan
// parameters (the customer may not change). It is idempotent. Included
// credits are granted with Grant (e.g. key "included").
func (s *Store) OpenAccount(ctx context.Context, a AccountSpec) (ChangeResult, error) {
	if err := validSub(a.Subscription); err != nil {
		return ChangeResult{}, err
	}
	if err := a.validate(); err != nil {
		return ChangeResult{}, err
	}
	v, err := s.run(ctx, openScript, s.keys(a.Subscription).list(), s.nowMs(), s.grace, a.Customer,
		"policy", string(a.Policy), "low_abs", int64(a.LowThreshold), "low_pct", a.LowPercent,
		"min", int64(a.TopUpMin), "max", int64(a.TopUpMax), "currency", a.Currency, "value", a.CreditValue.String(),
		"dlim", a.debtLimitField(),
		"plc", int64(a.PurchaseLimitCredits), "plm", minor(a.PurchaseLimitCharge, a.Currency),
		"arpt", int64(a.AutoRechargeThreshold), "arpa", int64(a.AutoRechargeAmount))
	if err != nil {
		return ChangeResult{}, err
	}
	r, ok := strs(v)
	if !ok || len(r) != 3 {
		return ChangeResult{}, errUnexpectedScriptData
	}
	bal, err := amount(r[0])
	if err != nil {
		return ChangeResult{}, err
	}
	res := ChangeResult{Balance: bal, Crossing: LowChange(r[1]), Low: r[2] == "1"}
	s.noteLow(ctx, a.Subscription, res.Crossing)
	return res, nil
}

// validate checks an account's plan parameters.
func (a AccountSpec) validate() error {
	switch {
	case a.Customer == "":
		return fmt.Errorf("%w: customer is required", ErrInvalid)
	case a.Policy != Overage && a.Policy != Unfunded:
		return fmt.Errorf("%w: policy %q, want overage or unfunded", ErrInvalid, a.Policy)
	case a.LowThreshold < 0 || !a.LowThreshold.Valid():
		return fmt.Errorf("%w: low threshold %s", ErrInvalid, a.LowThreshold)
	case a.LowPercent < 0 || a.LowPercent > 100:
		return fmt.Errorf("%w: low percent %d, want 0-100", ErrInvalid, a.LowPercent)
	case a.TopUpMin < 0 || a.TopUpMax < 0 || !a.TopUpMin.Valid() || !a.TopUpMax.Valid():
		return fmt.Errorf("%w: negative top-up bound", ErrInvalid)
	case a.TopUpMax > 0 && a.TopUpMin > a.TopUpMax:
		return fmt.Errorf("%w: top-up min %s above max %s", ErrInvalid, a.TopUpMin, a.TopUpMax)
	case a.Currency == "":
		return fmt.Errorf("%w: currency is required", ErrInvalid)
	case a.CreditValue.IsNegative():
		return fmt.Errorf("%w: negative credit value", ErrInvalid)
	case a.DebtLimit != nil && (*a.DebtLimit < 0 || !a.DebtLimit.Valid()):
		return fmt.Errorf("%w: debt limit %s", ErrInvalid, *a.DebtLimit)
	case a.AutoRechargeThreshold < 0 || a.AutoRechargeAmount < 0 || !a.AutoRechargeThreshold.Valid() || !a.AutoRechargeAmount.Valid():
		return fmt.Errorf("%w: negative auto-recharge", ErrInvalid)
	case a.PurchaseLimitCredits < 0 || !a.PurchaseLimitCredits.Valid():
		return fmt.Errorf("%w: purchase limit %s", ErrInvalid, a.PurchaseLimitCredits)
	case a.PurchaseLimitCharge.IsNegative() || !a.PurchaseLimitCharge.Equal(a.PurchaseLimitCharge.Round(MinorUnits(a.Currency))):
		return fmt.Errorf("%w: purchase limit %s %s: a non-negative amount in whole minor units", ErrInvalid, a.PurchaseLimitCharge, a.Currency)
	}
	return nil
}

// debtLimitField is the account field dlim: µcredits, or empty for no limit.
func (a AccountSpec) debtLimitField() string {
	if a.DebtLimit == nil {
		return ""
	}
	return strconv.FormatInt(int64(*a.DebtLimit), 10)
}

// debtLimit reads the account field dlim (debtLimitField): nil for no limit.
func debtLimit(acct map[string]string) (*credit.Amount, error) {
	d := acct["dlim"]
	if d == "" {
		return nil, nil
	}
	lim, err := amount(d)
	if err != nil {
		return nil, err
	}
	return &lim, nil
}

// fingerprint identifies a request's content for idempotency conflicts.
func fingerprint(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

// Grant adds a grant bucket (included credits, promotions, purchases made
// elsewhere). The same Key with the same content returns the first result.
func (s *Store) Grant(ctx context.Context, g GrantRequest) (ChangeResult, error) {
	if err := validSub(g.Subscription); err != nil {
		return ChangeResult{}, err
	}
	if !g.Type.Valid() {
		return ChangeResult{}, fmt.Errorf("%w: grant type %q", ErrInvalid, g.Type)
	}
	eff := g.EffectiveAt
	if eff.IsZero() {
		eff = s.now()
	}
	fp := fingerprint("grant", string(g.Type), g.Amount.String(), strconv.FormatInt(ms(g.EffectiveAt), 10), strconv.FormatInt(ms(g.ExpiresAt), 10), g.CostBasis.String(), g.Reason,
		g.Charge.String(), g.Currency)
	fields := []string{"reason", g.Reason}
	if !g.Charge.IsZero() {
		if g.Currency == "" {
			return ChangeResult{}, fmt.Errorf("%w: a charge needs its currency", ErrInvalid)
		}
		fields = append(fields, "charge", g.Charge.String(), "currency", g.Currency)
	}
	return s.change(ctx, g.Subscription, g.Key, fp, "grant", "grant", g.Type, g.Amount, eff, g.ExpiresAt, g.CostBasis.String(), false, "", g.CarryOver, fields...)
}

// TopUp buys credits: the amount must be within the plan's min/max; it
// creates a purchased grant whose cost basis is the credit value and
// records the charge (amount × credit value, in the subscription's
// currency) in the ledger. Idempotent by Key.
func (s *Store) TopUp(ctx context.Context, t TopUpRequest) (ChangeResult, error) {
	if err := validSub(t.Subscription); err != nil {
		return ChangeResult{}, err
	}
	fp := fingerprint("topup", t.Amount.String(), strconv.FormatInt(ms(t.ExpiresAt), 10))
	for attempt := 0; attempt < 5; attempt++ {
		vals, err := s.rc.HMGet(ctx, s.keys(t.Subscription).Account, "value", "currency").Result()
		if err != nil {
			return ChangeResult{}, classify(err)
		}
		vs, _ := vals[0].(string)
		cur, _ := vals[1].(string)
		if vs == "" {
			return ChangeResult{}, ErrUnknownSubscription
		}
		value, err := decimal.NewFromString(vs)
		if err != nil {
			return ChangeResult{}, fmt.Errorf("balance: stored credit value %q: %w", vs, err)
		}
		charge := Charge(t.Amount, value, cur)
		if t.charge != nil {
			charge = *t.charge
		}
		// the script checks the value, then counts the purchase in the month
		res, err := s.change(ctx, t.Subscription, t.Key, fp, "grant", "topup", Purchased, t.Amount, s.now(), t.ExpiresAt, vs, false,
			topUpTerms(vs, s.now(), charge, cur, t.reserved), t.reserved, "charge", charge.String(), "currency", cur)
		if errors.Is(err, errStaleCreditValue) {
			continue
		}
		var pl *PurchaseLimitError
		if errors.As(err, &pl) {
			pl.inCurrency(cur)
		}
		if err != nil {
			return res, err
		}
		if !res.Replayed {
			res.Charge, res.Currency = charge, cur
			return res, nil
		}
		// A replay reports the charge recorded the first time.
		es, err := s.Ledger(ctx, t.Subscription, res.Seq, 1)
		if err != nil {
			return res, err
		}
		if len(es) != 1 || es[0].Seq != res.Seq {
			return res, fmt.Errorf("%w: ledger entry %d of a top-up is missing", errUnexpectedScriptData, res.Seq)
		}
		if res.Charge, err = decimal.NewFromString(es[0].Fields["charge"]); err != nil {
			return res, fmt.Errorf("%w: charge %q", errUnexpectedScriptData, es[0].Fields["charge"])
		}
		res.Currency = es[0].Fields["currency"]
		return res, nil
	}
	return ChangeResult{}, fmt.Errorf("%w: credit value keeps changing", ErrConflict)
}

// Adjust adds (Amount > 0, an adjustment grant) or deducts (Amount < 0)
// credits with a mandatory reason and actor. A deduction beyond the
// available balance is refused with ErrInsufficientBalance unless Force.
func (s *Store) Adjust(ctx context.Context, a AdjustRequest) (ChangeResult, error) {
	if err := validSub(a.Subscription); err != nil {
		return ChangeResult{}, err
	}
	if strings.TrimSpace(a.Reason) == "" || strings.TrimSpace(a.Actor) == "" {
		return ChangeResult{}, fmt.Errorf("%w: an adjustment needs a reason and an actor", ErrInvalid)
	}
	if a.Amount == 0 {
		return ChangeResult{}, fmt.Errorf("%w: zero adjustment", ErrInvalid)
	}
	parts := []string{"adjust", a.Amount.String(), a.Reason, a.Actor, strconv.FormatBool(a.Force), strconv.FormatInt(ms(a.ExpiresAt), 10)}
	fields := []string{"reason", a.Reason, "actor", a.Actor}
	// note and public only when set, so earlier requests keep their fingerprint
	if a.Note != "" {
		parts = append(parts, "note", a.Note)
		fields = append(fields, "note", a.Note)
	}
	if a.Public {
		parts = append(parts, "public")
		fields = append(fields, "public", "1")
	}
	if !a.Charge.IsZero() {
		if a.Currency == "" {
			return ChangeResult{}, fmt.Errorf("%w: a charge needs its currency", ErrInvalid)
		}
		parts = append(parts, "charge", a.Charge.String(), a.Currency)
		fields = append(fields, "charge", a.Charge.String(), "currency", a.Currency)
	}
	fp := fingerprint(parts...)
	if a.Amount > 0 {
		return s.change(ctx, a.Subscription, a.Key, fp, "grant", "adjustment", Adjustment, a.Amount, s.now(), a.ExpiresAt, "", false, "", false, fields...)
	}
	return s.change(ctx, a.Subscription, a.Key, fp, "deduct", "adjustment", Adjustment, -a.Amount, s.now(), time.Time{}, "", a.Force, "", false, fields...)
}

func (s *Store) change(ctx context.Context, sub, key, fp, op, kind string, typ GrantType, amt credit.Amount,
	eff, exp time.Time, cost string, force bool, expect string, owned bool, fields ...string) (ChangeResult, error) {
	switch {
	case key == "" || len(key) > 200:
		return ChangeResult{}, fmt.Errorf("%w: idempotency key is required (at most 200 bytes)", ErrInvalid)
	case amt <= 0 || amt > credit.MaxAmount:
		return ChangeResult{}, fmt.Errorf("%w: amount %s, want 0 < amount <= %s", ErrInvalid, amt, credit.MaxAmount)
	case eff.UnixMilli() < 0:
		return ChangeResult{}, fmt.Errorf("%w: effective time before 1970", ErrInvalid)
	case !exp.IsZero() && exp.UnixMilli() <= eff.UnixMilli():
		return ChangeResult{}, fmt.Errorf("%w: expiry %s not after effective time %s", ErrInvalid, exp, eff)
	}
	f := "0"
	if force {
		f = "1"
	}
	// owned: credits the customer already has (paid, carried over) pass the
	// cap up to the hard ceiling; refusing them would strand them
	maxg := s.grants
	if owned {
		maxg *= SystemGrantsFactor
	}
	args := []any{s.nowMs(), s.grace, key, fp, op, kind, string(typ), int64(amt), eff.UnixMilli(), ms(exp), cost, f, expect, maxg}
	for _, x := range fields {
		args = append(args, x)
	}
	v, err := s.run(ctx, changeScript, s.keys(sub).list(), args...)
	if err != nil {
		return ChangeResult{}, err
	}
	r, ok := strs(v)
	if !ok || len(r) < 2 {
		return ChangeResult{}, errUnexpectedScriptData
	}
	switch r[0] {
	case "E":
		if len(r) != 5 {
			return ChangeResult{}, errUnexpectedScriptData
		}
		s.noteLow(ctx, sub, LowChange(r[3]))
		switch r[1] {
		case "CMRANGE":
			return ChangeResult{}, fmt.Errorf("%w: deducting %s", ErrOutOfRange, amt)
		case "CMTOOMANY":
			return ChangeResult{}, fmt.Errorf("%w: the subscription has %s active grants, the most allowed", ErrTooManyGrants, r[2])
		}
		return ChangeResult{}, fmt.Errorf("%w: %s available, %s asked", ErrInsufficientBalance, amountOrZero(r[2]), amt)
	case "N", "R":
		res, err := parseChange(r[1])
		if err != nil {
			// The change is made (and kept under its key): say so, so nobody
			// repeats it under a new key.
			seq, _, _ := strings.Cut(r[1], "|")
			return ChangeResult{}, fmt.Errorf("%w (ledger seq %s): %v", ErrUnreadableResult, seq, err)
		}
		res.Replayed = r[0] == "R"
		if !res.Replayed {
			s.noteLow(ctx, sub, res.Crossing)
		}
		return res, nil
	}
	return ChangeResult{}, errUnexpectedScriptData
}

// parseChange reads "seq|grant|balance|crossing|low|g1,amt1,g2,amt2".
func parseChange(s string) (ChangeResult, error) {
	p := strings.Split(s, "|")
	if len(p) != 6 {
		return ChangeResult{}, errUnexpectedScriptData
	}
	seq, err := strconv.ParseInt(p[0], 10, 64)
	if err != nil {
		return ChangeResult{}, errUnexpectedScriptData
	}
	bal, err := amount(p[2])
	if err != nil {
		return ChangeResult{}, err
	}
	res := ChangeResult{Seq: seq, GrantID: p[1], Balance: bal, Crossing: LowChange(p[3]), Low: p[4] == "1"}
	if p[5] != "" {
		d := strings.Split(p[5], ",")
		if len(d)%2 != 0 {
			return ChangeResult{}, errUnexpectedScriptData
		}
		for i := 0; i < len(d); i += 2 {
			a, err := amount(d[i+1])
			if err != nil {
				return ChangeResult{}, err
			}
			res.Draws = append(res.Draws, Draw{Grant: d[i], Amount: a})
		}
	}
	return res, nil
}

// noteLow keeps the sharded low set (for metrics) in step with crossings.
// It is outside the script because the set is not in the subscription's
// slot; RepairLow repairs a missed update.
func (s *Store) noteLow(ctx context.Context, sub string, c LowChange) {
	switch c {
	case WentLow:
		s.rc.SAdd(ctx, s.lowKey(sub), sub)
	case WentOK:
		s.rc.SRem(ctx, s.lowKey(sub), sub)
	}
}

// LowSubscriptions lists, sorted, the subscriptions of the low set (below
// their threshold at their last crossing): one pipelined SMEMBERS per shard.
func (s *Store) LowSubscriptions(ctx context.Context) ([]string, error) {
	pipe := s.rc.Pipeline()
	cmds := make([]*redis.StringSliceCmd, LowShards)
	for i := range cmds {
		cmds[i] = pipe.SMembers(ctx, s.lowShard(i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, classify(err)
	}
	var out []string
	for _, c := range cmds {
		out = append(out, c.Val()...)
	}
	sort.Strings(out)
	return out, nil
}

// repairChunk bounds one pipelined round trip of RepairLow.
const repairChunk = 1000

// RepairLow brings the low set in line with the accounts' own low state
// (the field written by every script): subs (e.g. the catalog's
// subscriptions) and the set's members are checked, pipelined; a low
// account missing from the set is added, a member that is not low or has no
// account is removed. It returns how many it added and removed. A crossing
// racing with it can leave one stale member until the next repair; readers
// check the balance anyway.
func (s *Store) RepairLow(ctx context.Context, subs []string) (added, removed int, err error) {
	members, err := s.LowSubscriptions(ctx)
	if err != nil {
		return 0, 0, err
	}
	in := make(map[string]bool, len(members))
	all := make([]string, 0, len(subs)+len(members))
	for _, m := range members {
		in[m] = true
		all = append(all, m)
	}
	for _, sub := range subs {
		if !in[sub] && validSub(sub) == nil {
			all = append(all, sub)
		}
	}
	for len(all) > 0 {
		n := min(len(all), repairChunk)
		chunk := all[:n]
		all = all[n:]
		pipe := s.rc.Pipeline()
		cmds := make([]*redis.StringCmd, n)
		for i, sub := range chunk {
			cmds[i] = pipe.HGet(ctx, s.keys(sub).Account, "low")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return added, removed, classify(err)
		}
		fix := s.rc.Pipeline()
		for i, sub := range chunk {
			low := cmds[i].Val() == "1"
			switch {
			case low && !in[sub]:
				fix.SAdd(ctx, s.lowKey(sub), sub)
				added++
			case !low && in[sub]:
				fix.SRem(ctx, s.lowKey(sub), sub)
				removed++
			}
		}
		if fix.Len() > 0 {
			if _, err := fix.Exec(ctx); err != nil {
				return added, removed, classify(err)
			}
		}
	}
	return added, removed, nil
}

// Expire turns remainders of grants expired beyond the grace window into
// breakage entries (exactly once) and settles debt from eligible grants.
// Every write does the same first; call Expire for idle subscriptions.
func (s *Store) Expire(ctx context.Context, sub string) (ChangeResult, error) {
	if err := validSub(sub); err != nil {
		return ChangeResult{}, err
	}
	v, err := s.run(ctx, expireScript, s.keys(sub).list(), s.nowMs(), s.grace)
	if err != nil {
		return ChangeResult{}, err
	}
	r, ok := strs(v)
	if !ok || len(r) != 5 {
		return ChangeResult{}, errUnexpectedScriptData
	}
	bal, err := amount(r[0])
	if err != nil {
		return ChangeResult{}, err
	}
	n, e1 := strconv.ParseInt(r[3], 10, 64)
	seq, e2 := strconv.ParseInt(r[4], 10, 64)
	if e1 != nil || e2 != nil || n < 0 || n > seq {
		return ChangeResult{}, errUnexpectedScriptData
	}
	res := ChangeResult{Seq: seq, Balance: bal, Crossing: LowChange(r[1]), Low: r[2] == "1"}
	if n > 0 {
		res.FirstSeq = seq - n + 1
	}
	s.noteLow(ctx, sub, res.Crossing)
	return res, nil
}

// DueForExpiry returns, in order, those of subs with a grant past
// expiry + grace (the account's nexp field, written by every script), or
// whose account predates that field; subscriptions without an account are
// left out. One pipelined round trip per 1,000 subscriptions.
func (s *Store) DueForExpiry(ctx context.Context, subs []string) ([]string, error) {
	now := s.nowMs()
	var due []string
	err := s.accountFields(ctx, subs, []string{"seq", "nexp"}, func(sub string, v []any) {
		if v[0] == nil {
			return // no account
		}
		ns, _ := v[1].(string)
		next, err := strconv.ParseInt(ns, 10, 64)
		if ns == "" || err != nil || (next > 0 && next+s.grace <= now) {
			due = append(due, sub)
		}
	})
	return due, err
}

// accountFields reads fields of each of subs' accounts, in order (one
// pipelined round trip per repairChunk subscriptions), and hands each
// valid subscription's values to f.
func (s *Store) accountFields(ctx context.Context, subs []string, fields []string, f func(sub string, vals []any)) error {
	for len(subs) > 0 {
		n := min(len(subs), repairChunk)
		chunk := subs[:n]
		subs = subs[n:]
		pipe := s.rc.Pipeline()
		cmds := make([]*redis.SliceCmd, n)
		for i, sub := range chunk {
			if validSub(sub) == nil {
				cmds[i] = pipe.HMGet(ctx, s.keys(sub).Account, fields...)
			}
		}
		if pipe.Len() == 0 {
			continue
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return classify(err)
		}
		for i, c := range cmds {
			if c != nil {
				f(chunk[i], c.Val())
			}
		}
	}
	return nil
}

func strs(v any) ([]string, bool) {
	xs, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		switch t := x.(type) {
		case string:
			out[i] = t
		case int64:
			out[i] = strconv.FormatInt(t, 10)
		default:
			return nil, false
		}
	}
	return out, true
}

func amount(s string) (credit.Amount, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: amount %q", errUnexpectedScriptData, s)
	}
	return credit.Amount(n), nil
}

func amountOrZero(s string) credit.Amount {
	a, _ := amount(s)
	return a
}

// eventFingerprint is the 64-bit FNV-1a hash of an event id; the member
// stored is the hash as a signed decimal (intset-encoded), the bucket
// selector its low 31 bits. A false "duplicate" needs a 64-bit collision
// within one set of at most ~400 ids.
func eventFingerprint(id string) (string, int64) {
	v, bits := idHash(id)
	return strconv.FormatInt(v, 10), bits
}

// idHash is eventFingerprint's hash as a number (go-redis sends it as
// the same decimal text). FNV-1a inline: hash/fnv's interface value and the
// []byte copy allocate.
func idHash(id string) (int64, int64) {
	v := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		v ^= uint64(id[i])
		v *= 1099511628211
	}
	return int64(v), int64(v & 0x7fffffff)
}

// RestoreGrant is one grant of a restored account.
type RestoreGrant struct {
	ID          string // "g<seq>", as the ledger named it
	Type        GrantType
	Amount      credit.Amount
	Remaining   credit.Amount
	EffectiveAt time.Time
	ExpiresAt   time.Time // zero: never
	CostBasis   decimal.Decimal
}

// RestoreSpec is a lost account as the archive knows it.
type RestoreSpec struct {
	Account    AccountSpec
	LastSeq    int64 // the ledger continues after it
	Debt       credit.Amount
	Unfunded   credit.Amount
	Grants     []RestoreGrant
	Watermarks map[string]int64 // "topic/partition" → last offset applied
}

// Restore recreates a subscription's account after Redis lost it: grants
// with their remainders, debt, cumulative unfunded usage, the ledger's next
// sequence number and the offset watermarks (so redelivered events still
// count once). The balance is the grants' remainders less the debt. Event
// ids remembered for producer duplicates are not restored. It refuses
// (ErrConflict) when the account or its ledger exists.
func (s *Store) Restore(ctx context.Context, r RestoreSpec) (ChangeResult, error) {
	a := r.Account
	if err := validSub(a.Subscription); err != nil {
		return ChangeResult{}, err
	}
	if err := a.validate(); err != nil {
		return ChangeResult{}, err
	}
	if r.LastSeq < 0 || r.Debt < 0 || r.Unfunded < 0 || !r.Debt.Valid() || !r.Unfunded.Valid() {
		return ChangeResult{}, fmt.Errorf("%w: negative sequence, debt or unfunded", ErrInvalid)
	}
	args := []any{s.nowMs(), s.grace, a.Customer, r.LastSeq, int64(r.Debt), int64(r.Unfunded), len(r.Grants)}
	var total credit.Amount
	for _, g := range r.Grants {
		if !g.Type.Valid() || g.Remaining < 0 || g.Remaining > g.Amount || !g.Amount.Valid() {
			return ChangeResult{}, fmt.Errorf("%w: grant %s", ErrInvalid, g.ID)
		}
		total += g.Remaining
		args = append(args, g.ID, string(g.Type), int64(g.Amount), int64(g.Remaining), ms(g.EffectiveAt), ms(g.ExpiresAt), g.CostBasis.String())
	}
	if !(total - r.Debt).Valid() {
		return ChangeResult{}, fmt.Errorf("%w: restored balance out of range", ErrOutOfRange)
	}
	args = append(args, len(r.Watermarks))
	for src, off := range r.Watermarks {
		if off < 0 || off > maxOffset {
			return ChangeResult{}, fmt.Errorf("%w: watermark %s %d", ErrInvalid, src, off)
		}
		args = append(args, src, off)
	}
	args = append(args, "policy", string(a.Policy), "low_abs", int64(a.LowThreshold), "low_pct", a.LowPercent,
		"min", int64(a.TopUpMin), "max", int64(a.TopUpMax), "currency", a.Currency, "value", a.CreditValue.String(),
		"dlim", a.debtLimitField(),
		"plc", int64(a.PurchaseLimitCredits), "plm", minor(a.PurchaseLimitCharge, a.Currency), "arpt", int64(a.AutoRechargeThreshold), "arpa", int64(a.AutoRechargeAmount))
	v, err := s.run(ctx, restoreScript, s.keys(a.Subscription).list(), args...)
	if err != nil {
		return ChangeResult{}, err
	}
	res, ok := strs(v)
	if !ok || len(res) != 3 {
		return ChangeResult{}, errUnexpectedScriptData
	}
	bal, err := amount(res[0])
	if err != nil {
		return ChangeResult{}, err
	}
	out := ChangeResult{Seq: r.LastSeq, Balance: bal, Crossing: LowChange(res[1]), Low: res[2] == "1"}
	s.noteLow(ctx, a.Subscription, out.Crossing)
	return out, nil
}
