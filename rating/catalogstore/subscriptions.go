package catalogstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/rating"
)

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
		v.Status = v.StatusAt(s.now())
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

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
		if err := s.ensureSpans(ctx, sub.CustomerID); err != nil {
			return nil, err
		}
		start, end := spanOf(sub)
		keys := []string{s.key(kSubs), s.key(kSubKeys), s.key(kSubFP), s.key("plansubs", plan.ID), s.key("custsubs", sub.CustomerID), s.key(kVersion), s.key(kPlans), s.key(kChanges), s.key(kSpan, sub.CustomerID)}
		res, err := createSubScript.Run(ctx, s.rc, keys, sub.ID, b, idempotencyKey, fp, plan.ID, planRaw, start, end).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("catalogstore: create subscription: %w", err)
		}
		switch res[0] {
		case "created":
			sub.Status = sub.StatusAt(s.now())
			return &CreateResult{Subscription: sub, Plan: plan, Created: true}, nil
		case "exists":
			return s.existing(ctx, res[1], fp)
		case "overlap":
			return nil, overlapError(res[1])
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

// Subscription returns a subscription.
func (s *Store) Subscription(ctx context.Context, id string) (_ *rating.Subscription, err error) {
	defer classify(&err)
	v := new(rating.Subscription)
	if err := s.get(ctx, kSubs, id, v); err != nil {
		return nil, err
	}
	v.Status = v.StatusAt(s.now())
	return v, nil
}

// Subscriptions lists all subscriptions by id.
func (s *Store) Subscriptions(ctx context.Context) (_ []*rating.Subscription, err error) {
	defer classify(&err)
	subs, err := list(ctx, s, kSubs, func(v *rating.Subscription) string { return v.ID })
	for _, v := range subs {
		v.Status = v.StatusAt(s.now())
	}
	return subs, err
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
