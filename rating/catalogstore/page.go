package catalogstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/creditmeter/creditmeter/rating"
)

// A page is up to limit entries of a list ordered by id, those after the id
// after ("" for the first page); more says whether entries follow. Pages
// follow by key, so entries created meanwhile never repeat or shift a later
// page (one whose id sorts before after is not seen). A page reads every
// id of the list (HKEYS) but decodes only its own entries.

// CurrenciesPage is a page of Currencies.
func (s *Store) CurrenciesPage(ctx context.Context, after string, limit int) (_ []*rating.CreditCurrency, more bool, err error) {
	defer classify(&err)
	return hashPage[rating.CreditCurrency](ctx, s, kCurrencies, after, limit)
}

// FeaturesPage is a page of Features.
func (s *Store) FeaturesPage(ctx context.Context, after string, limit int) (_ []*rating.Feature, more bool, err error) {
	defer classify(&err)
	return hashPage[rating.Feature](ctx, s, kFeatures, after, limit)
}

// PlansPage is a page of Plans.
func (s *Store) PlansPage(ctx context.Context, after string, limit int) (_ []*rating.Plan, more bool, err error) {
	defer classify(&err)
	return hashPage[rating.Plan](ctx, s, kPlans, after, limit)
}

// CustomersPage is a page of Customers.
func (s *Store) CustomersPage(ctx context.Context, after string, limit int) (_ []*rating.Customer, more bool, err error) {
	defer classify(&err)
	return hashPage[rating.Customer](ctx, s, kCustomers, after, limit)
}

// SubscriptionsPage is a page of Subscriptions.
func (s *Store) SubscriptionsPage(ctx context.Context, after string, limit int) (_ []*rating.Subscription, more bool, err error) {
	defer classify(&err)
	return hashPage[rating.Subscription](ctx, s, kSubs, after, limit)
}

// CustomerSubscriptionsPage is a page of CustomerSubscriptions.
func (s *Store) CustomerSubscriptionsPage(ctx context.Context, customerID, after string, limit int) (_ []*rating.Subscription, more bool, err error) {
	defer classify(&err)
	ids, err := s.rc.SMembers(ctx, s.key("custsubs", customerID)).Result()
	if err != nil {
		return nil, false, err
	}
	ids, more = pageIDs(ids, after, limit)
	subs, err := s.subscriptions(ctx, s.rc, ids)
	return subs, more, err
}

// pageIDs sorts ids and keeps the limit first after after.
func pageIDs(ids []string, after string, limit int) ([]string, bool) {
	sort.Strings(ids)
	i := sort.SearchStrings(ids, after)
	if i < len(ids) && ids[i] == after {
		i++
	}
	ids = ids[i:]
	if len(ids) > limit {
		return ids[:limit], true
	}
	return ids, false
}

func hashPage[T any](ctx context.Context, s *Store, kind, after string, limit int) ([]*T, bool, error) {
	ids, err := s.rc.HKeys(ctx, s.key(kind)).Result()
	if err != nil {
		return nil, false, err
	}
	ids, more := pageIDs(ids, after, limit)
	if len(ids) == 0 {
		return nil, more, nil
	}
	vals, err := s.rc.HMGet(ctx, s.key(kind), ids...).Result()
	if err != nil {
		return nil, false, err
	}
	out := make([]*T, 0, len(ids))
	for i, raw := range vals {
		b, ok := raw.(string)
		if !ok {
			continue // gone between the two reads
		}
		v := new(T)
		if err := json.Unmarshal([]byte(b), v); err != nil {
			return nil, false, fmt.Errorf("catalogstore: decode %q: %w", ids[i], err)
		}
		out = append(out, v)
	}
	return out, more, nil
}
