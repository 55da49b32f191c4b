// Package catalogstore keeps the rating catalog in Redis: one hash per kind of
// entry (JSON values) under a common {catalog} hash tag, so every write is one
// atomic script or transaction, also on Redis Cluster. Every write increments
// a version key and logs what changed; Follow polls the version and swaps a
// newly compiled table into a running rating.Rater, compiling only the new
// subscriptions when nothing else that rating depends on changed.
//
// Currencies, features and subscriptions are immutable once created (nothing
// can then change under a plan or a compiled table); plans and customers may
// be replaced. Nothing is ever deleted.
package catalogstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/internal/redisx"
	"github.com/creditmeter/creditmeter/rating"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("catalogstore: not found")
	// ErrConflict: the id (or idempotency key) exists with different content.
	ErrConflict = fault.New(fault.Conflict, "catalogstore: exists with different content")
	// ErrBusy: concurrent writes kept invalidating this one; retry.
	ErrBusy = fault.New(fault.Unavailable, "catalogstore: too much contention, retry")
)

// ErrUnavailable is wrapped by every error of a Redis outage (redisx's
// classification, shared with the balance store): retrying is safe.
var ErrUnavailable = redisx.ErrUnavailable

func classify(err *error) { *err = redisx.Classify(*err) }

// Store is the Redis catalog.
type Store struct {
	rc     redis.UniversalClient
	prefix string
	now    func() time.Time
}

// New makes a store whose keys start with prefix (e.g. "creditmeter:").
func New(rc redis.UniversalClient, prefix string) (*Store, error) {
	if rc == nil {
		return nil, errors.New("catalogstore: nil redis client")
	}
	return &Store{rc: rc, prefix: prefix, now: time.Now}, nil
}

// SetClock replaces time.Now (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

const (
	kCurrencies = "currencies"
	kFeatures   = "features"
	kPlans      = "plans"
	kCustomers  = "customers"
	kSubs       = "subscriptions"
	kSubKeys    = "subkeys"
	kSubFP      = "subfp"
	kVersion    = "version"
	kChanges    = "changes"
	kTokens     = "tokens"
)

// key names a catalog key; the {catalog} hash tag keeps all in one slot.
func (s *Store) key(parts ...string) string {
	k := s.prefix + "{catalog}"
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// Version is the catalog version: the number of writes so far.
func (s *Store) Version(ctx context.Context) (_ uint64, err error) {
	defer classify(&err)
	v, err := s.rc.Get(ctx, s.key(kVersion)).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// maxChanges bounds the change log; a rater further behind reloads fully.
const maxChanges = 10000

// bumpLua increments the version and logs the change in the change log, a
// sorted set scored by version of "<version>:<kind>:<id>", keeping the newest
// maxChanges entries.
var bumpLua = `
local function bump(vkey, ckey, change)
  local v = redis.call('INCR', vkey)
  redis.call('ZADD', ckey, v, v .. ':' .. change)
  redis.call('ZREMRANGEBYRANK', ckey, 0, -` + strconv.Itoa(maxChanges+1) + `)
  return v
end
`

// bumpScript is bump alone: KEYS version, changes; ARGV change.
var bumpScript = bumpLua + `return bump(KEYS[1], KEYS[2], ARGV[1])`

// createScript stores ARGV[2] at field ARGV[1] of hash KEYS[1] unless the
// field exists, and bumps the version KEYS[2] logging ARGV[3]:id in KEYS[3].
// It returns {1, version} or {0, existing value}.
var createScript = redis.NewScript(bumpLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then return {0, cur} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, bump(KEYS[2], KEYS[3], ARGV[3] .. ':' .. ARGV[1])}
`)

// create stores v under id unless present. Creating the same content again is
// a no-op (created false); different content is ErrConflict.
func (s *Store) create(ctx context.Context, kind, id string, v any) (created bool, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	res, err := createScript.Run(ctx, s.rc, []string{s.key(kind), s.key(kVersion), s.key(kChanges)}, id, b, kind).Slice()
	if err != nil {
		return false, fmt.Errorf("catalogstore: create %s %q: %w", kind, id, err)
	}
	if res[0].(int64) == 1 {
		return true, nil
	}
	if !bytes.Equal([]byte(res[1].(string)), b) {
		return false, fmt.Errorf("%w: %s %q", ErrConflict, kind, id)
	}
	return false, nil
}

func (s *Store) get(ctx context.Context, kind, id string, v any) error {
	b, err := s.rc.HGet(ctx, s.key(kind), id).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: %s %q", ErrNotFound, kind, id)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func list[T any](ctx context.Context, s *Store, kind string, id func(*T) string) ([]*T, error) {
	m, err := s.rc.HGetAll(ctx, s.key(kind)).Result()
	if err != nil {
		return nil, err
	}
	return decodeAll(m, id)
}

func decodeAll[T any](m map[string]string, id func(*T) string) ([]*T, error) {
	out := make([]*T, 0, len(m))
	for k, b := range m {
		v := new(T)
		if err := json.Unmarshal([]byte(b), v); err != nil {
			return nil, fmt.Errorf("catalogstore: decode %q: %w", k, err)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return id(out[i]) < id(out[j]) })
	return out, nil
}

// CreateCurrency validates and stores a credit currency.
func (s *Store) CreateCurrency(ctx context.Context, c *rating.CreditCurrency) (_ bool, err error) {
	defer classify(&err)
	if err := rating.ValidateCurrency(c); err != nil {
		return false, err
	}
	return s.create(ctx, kCurrencies, c.Code, c)
}

// CreateFeature validates and stores a feature.
func (s *Store) CreateFeature(ctx context.Context, f *rating.Feature) (_ bool, err error) {
	defer classify(&err)
	if err := rating.ValidateFeature(f); err != nil {
		return false, err
	}
	return s.create(ctx, kFeatures, f.ID, f)
}

// CreateCustomer validates and stores a customer.
func (s *Store) CreateCustomer(ctx context.Context, c *rating.Customer) (_ bool, err error) {
	defer classify(&err)
	if err := rating.ValidateCustomer(c); err != nil {
		return false, err
	}
	return s.create(ctx, kCustomers, c.ID, c)
}

// ReplaceCustomer validates and stores c over the customer of its id, which
// must exist.
func (s *Store) ReplaceCustomer(ctx context.Context, c *rating.Customer) (err error) {
	defer classify(&err)
	if err := rating.ValidateCustomer(c); err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	n, err := replaceScript.Run(ctx, s.rc, []string{s.key(kCustomers), s.key(kVersion), s.key(kChanges)}, c.ID, b, kCustomers).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: customers %q", ErrNotFound, c.ID)
	}
	return nil
}

// replaceScript overwrites an existing field and bumps the version; 0 when
// the field does not exist.
var replaceScript = redis.NewScript(bumpLua + `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
bump(KEYS[2], KEYS[3], ARGV[3] .. ':' .. ARGV[1])
return 1
`)

// refs loads the entries a plan or subscription refers to into a partial
// catalog that validation looks up.
func (s *Store) refs(ctx context.Context, customerID, planID string, featureIDs []string) (*rating.Catalog, error) {
	c, _, err := s.refsRaw(ctx, customerID, planID, featureIDs)
	return c, err
}

// refsRaw is refs that also returns the plan as stored, which a subscription
// write compares to detect a concurrent plan change.
func (s *Store) refsRaw(ctx context.Context, customerID, planID string, featureIDs []string) (*rating.Catalog, string, error) {
	c := rating.NewCatalog()
	var planRaw string
	cur, err := s.rc.HGetAll(ctx, s.key(kCurrencies)).Result()
	if err != nil {
		return nil, "", err
	}
	for _, b := range cur {
		v := new(rating.CreditCurrency)
		if err := json.Unmarshal([]byte(b), v); err != nil {
			return nil, "", err
		}
		c.Currencies[v.Code] = v
	}
	if customerID != "" {
		v := new(rating.Customer)
		if err := s.get(ctx, kCustomers, customerID, v); err == nil {
			c.Customers[v.ID] = v
		} else if !errors.Is(err, ErrNotFound) {
			return nil, "", err
		}
	}
	if planID != "" {
		raw, err := s.rc.HGet(ctx, s.key(kPlans), planID).Result()
		v := new(rating.Plan)
		if err == nil {
			if err := json.Unmarshal([]byte(raw), v); err != nil {
				return nil, "", err
			}
			planRaw = raw
			c.Plans[v.ID] = v
			if v.Prepaid != nil {
				for _, r := range v.Prepaid.Consumption {
					featureIDs = append(featureIDs, r.FeatureID)
				}
			}
		} else if !errors.Is(err, redis.Nil) {
			return nil, "", err
		}
	}
	if len(featureIDs) > 0 {
		vals, err := s.rc.HMGet(ctx, s.key(kFeatures), featureIDs...).Result()
		if err != nil {
			return nil, "", err
		}
		for _, raw := range vals {
			if b, ok := raw.(string); ok {
				v := new(rating.Feature)
				if err := json.Unmarshal([]byte(b), v); err != nil {
					return nil, "", err
				}
				c.Features[v.ID] = v
			}
		}
	}
	return c, planRaw, nil
}

func planFeatures(p *rating.Plan) []string {
	if p.Prepaid == nil {
		return nil
	}
	ids := make([]string, 0, len(p.Prepaid.Consumption))
	for _, r := range p.Prepaid.Consumption {
		ids = append(ids, r.FeatureID)
	}
	return ids
}

// CreatePlan validates and stores a plan.
func (s *Store) CreatePlan(ctx context.Context, p *rating.Plan) (_ bool, err error) {
	defer classify(&err)
	c, err := s.refs(ctx, "", "", planFeatures(p))
	if err != nil {
		return false, err
	}
	if err := rating.ValidatePlan(p, c); err != nil {
		return false, err
	}
	return s.create(ctx, kPlans, p.ID, p)
}

// ReplacePlan validates p and stores it over the plan of its id, which must
// exist. The new plan must still serve every subscription of the plan: same
// credit currency and a credit value in each subscription's currency unless
// it overrides the value. Subscriptions rate with the new plan from the next
// catalog refresh.
func (s *Store) ReplacePlan(ctx context.Context, p *rating.Plan) (err error) {
	defer classify(&err)
	c, err := s.refs(ctx, "", "", planFeatures(p))
	if err != nil {
		return err
	}
	if err := rating.ValidatePlan(p, c); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	plans, members := s.key(kPlans), s.key("plansubs", p.ID)
	for attempt := 0; attempt < 10; attempt++ {
		err = s.rc.Watch(ctx, func(tx *redis.Tx) error {
			old := new(rating.Plan)
			if err := s.get(ctx, kPlans, p.ID, old); err != nil {
				return err
			}
			ids, err := tx.SMembers(ctx, members).Result()
			if err != nil {
				return err
			}
			subs, err := s.subscriptions(ctx, tx, ids)
			if err != nil {
				return err
			}
			if err := planServes(p, old, subs); err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.HSet(ctx, plans, p.ID, b)
				pipe.Eval(ctx, bumpScript, []string{s.key(kVersion), s.key(kChanges)}, kPlans+":"+p.ID)
				return nil
			})
			return err
		}, plans, members)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return ErrBusy
}

func planServes(p, old *rating.Plan, subs []*rating.Subscription) error {
	if len(subs) == 0 {
		return nil
	}
	if p.Prepaid == nil || old.Prepaid == nil {
		return &rating.FieldError{Field: "billing_model", Code: "in_use", Message: "a plan with subscriptions must stay prepaid", Err: rating.ErrInvalid}
	}
	if p.Prepaid.CreditCurrency != old.Prepaid.CreditCurrency {
		return &rating.FieldError{Field: "prepaid.credit_currency", Code: "in_use", Message: "the credit currency of a plan with subscriptions cannot change", Err: rating.ErrInvalid}
	}
	for _, sub := range subs {
		if sub.CreditValue != nil {
			continue
		}
		if _, ok := p.Prepaid.PriceIn(sub.Currency); !ok {
			return &rating.FieldError{Field: "prepaid.currency_values", Code: "in_use",
				Message: fmt.Sprintf("subscription %q is priced in %s; the plan must keep a value in %s", sub.ID, sub.Currency, sub.Currency), Err: rating.ErrInvalid}
		}
	}
	return nil
}

type hmgetter interface {
	HMGet(ctx context.Context, key string, fields ...string) *redis.SliceCmd
}

func (s *Store) subscriptions(ctx context.Context, c hmgetter, ids []string) ([]*rating.Subscription, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := c.HMGet(ctx, s.key(kSubs), ids...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]*rating.Subscription, 0, len(ids))
	for _, raw := range vals {
		b, ok := raw.(string)
		if !ok {
			continue
		}
		v := new(rating.Subscription)
		if err := json.Unmarshal([]byte(b), v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// createSubScript stores a subscription unless its idempotency key or id is
// known, checking the plan is the one it was validated against.
// KEYS: subs, subkeys, subfp, plansubs, custsubs, version, plans, changes.
// ARGV: id, json, key ("" for none), fingerprint, plan id, plan json.
var createSubScript = redis.NewScript(bumpLua + `
if redis.call('HGET', KEYS[7], ARGV[5]) ~= ARGV[6] then return {'plan_changed', ''} end
if ARGV[3] ~= '' then
  local id = redis.call('HGET', KEYS[2], ARGV[3])
  if id then return {'exists', id} end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'exists', ARGV[1]} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[1]) end
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
bump(KEYS[6], KEYS[8], 'subscriptions:' .. ARGV[1])
return {'created', ARGV[1]}
`)

// CreateResult is the outcome of CreateSubscription.
type CreateResult struct {
	Subscription *rating.Subscription
	Plan         *rating.Plan
	Created      bool // false: an earlier request with the same key or id made it
}

// CreateSubscription validates and stores a subscription, idempotently: a
// request with the idempotency key (or, without key, the id) of an earlier one
// returns that subscription; with different content it is ErrConflict. An
// empty id gets a random one.
func (s *Store) CreateSubscription(ctx context.Context, sub *rating.Subscription, idempotencyKey string) (_ *CreateResult, err error) {
	defer classify(&err)
	fp, err := fingerprint(sub)
	if err != nil {
		return nil, err
	}
	if idempotencyKey != "" {
		if len(idempotencyKey) > 200 {
			return nil, &rating.FieldError{Field: "Idempotency-Key", Code: "invalid", Message: "the idempotency key must be at most 200 characters", Err: rating.ErrInvalid}
		}
		id, err := s.rc.HGet(ctx, s.key(kSubKeys), idempotencyKey).Result()
		if err == nil {
			return s.existing(ctx, id, fp)
		} else if !errors.Is(err, redis.Nil) {
			return nil, err
		}
	}
	if sub.ID != "" {
		if res, err := s.existing(ctx, sub.ID, fp); !errors.Is(err, ErrNotFound) {
			return res, err
		}
	} else {
		sub.ID = "sub_" + randomHex(12)
	}
	for attempt := 0; attempt < 10; attempt++ {
		c, planRaw, err := s.refsRaw(ctx, sub.CustomerID, sub.PlanID, featureIDs(sub.Consumption))
		if err != nil {
			return nil, err
		}
		plan, err := rating.PrepareSubscription(sub, c, s.now())
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(sub)
		if err != nil {
			return nil, err
		}
		keys := []string{s.key(kSubs), s.key(kSubKeys), s.key(kSubFP), s.key("plansubs", plan.ID), s.key("custsubs", sub.CustomerID), s.key(kVersion), s.key(kPlans), s.key(kChanges)}
		res, err := createSubScript.Run(ctx, s.rc, keys, sub.ID, b, idempotencyKey, fp, plan.ID, planRaw).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("catalogstore: create subscription: %w", err)
		}
		switch res[0] {
		case "created":
			return &CreateResult{Subscription: sub, Plan: plan, Created: true}, nil
		case "exists":
			return s.existing(ctx, res[1], fp)
		}
		// plan_changed: validate again against the new plan.
	}
	return nil, ErrBusy
}

func featureIDs(rows []rating.ConsumptionRate) []string {
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, r.FeatureID)
	}
	return ids
}

func (s *Store) existing(ctx context.Context, id, fp string) (*CreateResult, error) {
	sub, err := s.Subscription(ctx, id)
	if err != nil {
		return nil, err
	}
	old, err := s.rc.HGet(ctx, s.key(kSubFP), id).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if old != fp {
		return nil, fmt.Errorf("%w: subscription %q was created from a different request", ErrConflict, id)
	}
	plan, err := s.Plan(ctx, sub.PlanID)
	if err != nil {
		return nil, err
	}
	return &CreateResult{Subscription: sub, Plan: plan}, nil
}

// fingerprint identifies a subscription request as the client sent it, before
// the server fills start and billing defaults.
func fingerprint(sub *rating.Subscription) (string, error) {
	b, err := json.Marshal(sub)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16]), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// Currency returns a credit currency.
func (s *Store) Currency(ctx context.Context, code string) (_ *rating.CreditCurrency, err error) {
	defer classify(&err)
	v := new(rating.CreditCurrency)
	return v, s.get(ctx, kCurrencies, code, v)
}

// Feature returns a feature.
func (s *Store) Feature(ctx context.Context, id string) (_ *rating.Feature, err error) {
	defer classify(&err)
	v := new(rating.Feature)
	return v, s.get(ctx, kFeatures, id, v)
}

// Plan returns a plan.
func (s *Store) Plan(ctx context.Context, id string) (_ *rating.Plan, err error) {
	defer classify(&err)
	v := new(rating.Plan)
	return v, s.get(ctx, kPlans, id, v)
}

// Customer returns a customer.
func (s *Store) Customer(ctx context.Context, id string) (_ *rating.Customer, err error) {
	defer classify(&err)
	v := new(rating.Customer)
	return v, s.get(ctx, kCustomers, id, v)
}

// Subscription returns a subscription.
func (s *Store) Subscription(ctx context.Context, id string) (_ *rating.Subscription, err error) {
	defer classify(&err)
	v := new(rating.Subscription)
	return v, s.get(ctx, kSubs, id, v)
}

// Currencies lists the credit currencies by code.
func (s *Store) Currencies(ctx context.Context) (_ []*rating.CreditCurrency, err error) {
	defer classify(&err)
	return list(ctx, s, kCurrencies, func(v *rating.CreditCurrency) string { return v.Code })
}

// Features lists the features by id.
func (s *Store) Features(ctx context.Context) (_ []*rating.Feature, err error) {
	defer classify(&err)
	return list(ctx, s, kFeatures, func(v *rating.Feature) string { return v.ID })
}

// Plans lists the plans by id.
func (s *Store) Plans(ctx context.Context) (_ []*rating.Plan, err error) {
	defer classify(&err)
	return list(ctx, s, kPlans, func(v *rating.Plan) string { return v.ID })
}

// Customers lists the customers by id.
func (s *Store) Customers(ctx context.Context) (_ []*rating.Customer, err error) {
	defer classify(&err)
	return list(ctx, s, kCustomers, func(v *rating.Customer) string { return v.ID })
}

// Subscriptions lists all subscriptions by id.
func (s *Store) Subscriptions(ctx context.Context) (_ []*rating.Subscription, err error) {
	defer classify(&err)
	return list(ctx, s, kSubs, func(v *rating.Subscription) string { return v.ID })
}

// CustomerSubscriptions lists a customer's subscriptions by id.
func (s *Store) CustomerSubscriptions(ctx context.Context, customerID string) (_ []*rating.Subscription, err error) {
	defer classify(&err)
	ids, err := s.rc.SMembers(ctx, s.key("custsubs", customerID)).Result()
	if err != nil {
		return nil, err
	}
	return s.subscriptions(ctx, s.rc, ids)
}

// Load reads the whole catalog and its version as one consistent snapshot.
func (s *Store) Load(ctx context.Context) (_ *rating.Catalog, _ uint64, err error) {
	defer classify(&err)
	var cmds [5]*redis.MapStringStringCmd
	var ver *redis.StringCmd
	_, err = s.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range []string{kCurrencies, kFeatures, kPlans, kCustomers, kSubs} {
			cmds[i] = p.HGetAll(ctx, s.key(k))
		}
		ver = p.Get(ctx, s.key(kVersion))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("catalogstore: load: %w", err)
	}
	var version uint64
	if v, err := ver.Result(); err == nil {
		if version, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("catalogstore: version %q: %w", v, err)
		}
	}
	c := rating.NewCatalog()
	if err := fill(cmds[0].Val(), c.Currencies, func(v *rating.CreditCurrency) string { return v.Code }); err != nil {
		return nil, 0, err
	}
	if err := fill(cmds[1].Val(), c.Features, func(v *rating.Feature) string { return v.ID }); err != nil {
		return nil, 0, err
	}
	if err := fill(cmds[2].Val(), c.Plans, func(v *rating.Plan) string { return v.ID }); err != nil {
		return nil, 0, err
	}
	if err := fill(cmds[3].Val(), c.Customers, func(v *rating.Customer) string { return v.ID }); err != nil {
		return nil, 0, err
	}
	if err := fill(cmds[4].Val(), c.Subscriptions, func(v *rating.Subscription) string { return v.ID }); err != nil {
		return nil, 0, err
	}
	return c, version, nil
}

func fill[T any](m map[string]string, into map[string]*T, id func(*T) string) error {
	vs, err := decodeAll(m, id)
	if err != nil {
		return err
	}
	for _, v := range vs {
		into[id(v)] = v
	}
	return nil
}

// Refresh loads the whole catalog and installs its compiled table in r when
// it is newer than r's. It returns the subscriptions that did not compile.
func (s *Store) Refresh(ctx context.Context, r *rating.Rater) (_ []error, err error) {
	defer classify(&err)
	c, v, err := s.Load(ctx)
	if err != nil {
		return nil, err
	}
	t, errs := rating.Compile(c, v)
	r.Swap(t)
	return errs, nil
}

// SyncKind says what Sync did.
type SyncKind int

// What Sync did.
const (
	SyncNone        SyncKind = iota // r was current
	SyncIncremental                 // only new subscriptions were compiled
	SyncFull                        // the whole catalog was reloaded
)

// Sync brings r to the stored catalog version. When only subscriptions were
// created (or customers, currencies and features, which no compiled table
// depends on) since r's version, it compiles just the new subscriptions;
// otherwise (a plan changed, or the change log no longer reaches back to r's
// version) it reloads the whole catalog. It returns the subscriptions that did
// not compile.
func (s *Store) Sync(ctx context.Context, r *rating.Rater) (_ SyncKind, _ []error, err error) {
	defer classify(&err)
	v, err := s.Version(ctx)
	if err != nil {
		return SyncNone, nil, err
	}
	t := r.Table()
	cur := t.Version()
	switch {
	case v == cur && cur > 0:
		return SyncNone, nil, nil
	case cur == 0 || v < cur:
		errs, err := s.Refresh(ctx, r)
		return SyncFull, errs, err
	}
	members, err := s.rc.ZRangeByScore(ctx, s.key(kChanges), &redis.ZRangeBy{Min: "(" + strconv.FormatUint(cur, 10), Max: strconv.FormatUint(v, 10)}).Result()
	if err != nil {
		return SyncNone, nil, err
	}
	var subIDs []string
	full := uint64(len(members)) != v-cur
	for _, m := range members {
		parts := strings.SplitN(m, ":", 3)
		if len(parts) != 3 {
			full = true
			break
		}
		switch parts[1] {
		case kSubs:
			subIDs = append(subIDs, parts[2])
		case kCustomers, kCurrencies, kFeatures:
		default:
			full = true
		}
	}
	if full {
		errs, err := s.Refresh(ctx, r)
		return SyncFull, errs, err
	}
	subs, err := s.subscriptions(ctx, s.rc, subIDs)
	if err != nil {
		return SyncNone, nil, err
	}
	c := rating.NewCatalog()
	var featureIDs []string
	for _, sub := range subs {
		if _, ok := c.Plans[sub.PlanID]; !ok {
			p, err := s.Plan(ctx, sub.PlanID)
			if err != nil {
				return SyncNone, nil, err
			}
			c.Plans[p.ID] = p
			featureIDs = append(featureIDs, planFeatures(p)...)
		}
		for _, row := range sub.Consumption {
			featureIDs = append(featureIDs, row.FeatureID)
		}
	}
	if len(featureIDs) > 0 {
		vals, err := s.rc.HMGet(ctx, s.key(kFeatures), featureIDs...).Result()
		if err != nil {
			return SyncNone, nil, err
		}
		for _, raw := range vals {
			if b, ok := raw.(string); ok {
				f := new(rating.Feature)
				if err := json.Unmarshal([]byte(b), f); err != nil {
					return SyncNone, nil, err
				}
				c.Features[f.ID] = f
			}
		}
	}
	nt, errs := t.Extend(c, subs, v)
	r.Swap(nt)
	return SyncIncremental, errs, nil
}

// Follow keeps r current until ctx ends, calling Sync every interval. report
// receives Redis errors and subscriptions that did not compile (nil to
// ignore).
func (s *Store) Follow(ctx context.Context, r *rating.Rater, interval time.Duration, report func(error)) {
	if report == nil {
		report = func(error) {}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		_, errs, err := s.Sync(ctx, r)
		if err != nil && ctx.Err() == nil {
			report(err)
		}
		for _, e := range errs {
			report(e)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// IssueToken makes a bearer token scoped to one existing customer. Only its
// SHA-256 is stored.
func (s *Store) IssueToken(ctx context.Context, customerID string) (_ string, err error) {
	defer classify(&err)
	if _, err := s.Customer(ctx, customerID); err != nil {
		return "", err
	}
	tok := "cmc_" + randomHex(24)
	if err := s.rc.HSet(ctx, s.key(kTokens), hashToken(tok), customerID).Err(); err != nil {
		return "", err
	}
	return tok, nil
}

// TokenCustomer is the customer a token was issued for; ErrNotFound for an
// unknown token.
func (s *Store) TokenCustomer(ctx context.Context, token string) (_ string, err error) {
	defer classify(&err)
	id, err := s.rc.HGet(ctx, s.key(kTokens), hashToken(token)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	return id, err
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// PlanSubscriptions lists the subscriptions of a plan by id.
func (s *Store) PlanSubscriptions(ctx context.Context, planID string) (_ []*rating.Subscription, err error) {
	defer classify(&err)
	ids, err := s.rc.SMembers(ctx, s.key("plansubs", planID)).Result()
	if err != nil {
		return nil, err
	}
	return s.subscriptions(ctx, s.rc, ids)
}

// PreviewSubscription validates sub against the stored catalog (filling it as
// creation would) and returns its preview; nothing is written.
func (s *Store) PreviewSubscription(ctx context.Context, sub *rating.Subscription) (_ *rating.Preview, err error) {
	defer classify(&err)
	c, err := s.refs(ctx, sub.CustomerID, sub.PlanID, featureIDs(sub.Consumption))
	if err != nil {
		return nil, err
	}
	return rating.PreviewSubscription(sub, c, s.now())
}
