package catalogstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/rating"
)

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

// Plan returns a plan.
func (s *Store) Plan(ctx context.Context, id string) (_ *rating.Plan, err error) {
	defer classify(&err)
	v := new(rating.Plan)
	return v, s.get(ctx, kPlans, id, v)
}

// Plans lists the plans by id.
func (s *Store) Plans(ctx context.Context) (_ []*rating.Plan, err error) {
	defer classify(&err)
	return list(ctx, s, kPlans, func(v *rating.Plan) string { return v.ID })
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
