package catalogstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/creditmeter/creditmeter/rating"
)

// SubscriptionTable compiles the rating table of one subscription from the
// stored catalog (its plan and features: two round trips), the code the
// engine rates with: spend control's /check quotes from it without an
// engine in the process.
func (s *Store) SubscriptionTable(ctx context.Context, sub *rating.Subscription) (_ *rating.Table, err error) {
	defer classify(&err)
	c := rating.NewCatalog()
	p := new(rating.Plan)
	if err := s.get(ctx, kPlans, sub.PlanID, p); err != nil {
		return nil, err
	}
	c.Plans[p.ID] = p
	ids := append(planFeatures(p), featureIDs(sub.Consumption)...)
	if len(ids) > 0 {
		vals, err := s.rc.HMGet(ctx, s.key(kFeatures), ids...).Result()
		if err != nil {
			return nil, err
		}
		for i, raw := range vals {
			b, ok := raw.(string)
			if !ok {
				return nil, fmt.Errorf("feature %q of subscription %s: %w", ids[i], sub.ID, ErrNotFound)
			}
			f := new(rating.Feature)
			if err := json.Unmarshal([]byte(b), f); err != nil {
				return nil, err
			}
			c.Features[f.ID] = f
		}
	}
	c.Subscriptions[sub.ID] = sub
	t, errs := rating.Compile(c, 0)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}
