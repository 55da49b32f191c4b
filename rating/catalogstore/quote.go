package catalogstore

import (
	"context"
	"errors"

	"github.com/creditmeter/creditmeter/rating"
)

// SubscriptionTable compiles the rating table of one subscription from the
// stored catalog (its plan and features), the code the engine rates with:
// spend control's /check quotes from it without an engine in the process.
func (s *Store) SubscriptionTable(ctx context.Context, sub *rating.Subscription) (_ *rating.Table, err error) {
	defer classify(&err)
	c, err := s.refs(ctx, "", sub.PlanID, featureIDs(sub.Consumption))
	if err != nil {
		return nil, err
	}
	c.Subscriptions[sub.ID] = sub
	t, errs := rating.Compile(c, 0)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}
