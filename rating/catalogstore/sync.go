package catalogstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/rating"
)

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
	var subIDs, features []string
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
		case kFeatures:
			features = append(features, parts[2])
		case kCustomers, kCurrencies:
		default:
			full = true
		}
	}
	// A reporting meter belongs to every subscription (rating.Compile): a
	// new one means compiling them all again.
	if !full && len(features) > 0 {
		if full, err = s.anyReporting(ctx, features); err != nil {
			return SyncNone, nil, err
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
	for _, sub := range subs {
		if _, ok := c.Plans[sub.PlanID]; !ok {
			p, err := s.Plan(ctx, sub.PlanID)
			if err != nil {
				return SyncNone, nil, err
			}
			c.Plans[p.ID] = p
		}
	}
	if len(subs) > 0 {
		// every feature, not only the plans': the new subscriptions record
		// every reporting meter (features are few)
		all, err := s.rc.HGetAll(ctx, s.key(kFeatures)).Result()
		if err != nil {
			return SyncNone, nil, err
		}
		for _, b := range all {
			f := new(rating.Feature)
			if err := json.Unmarshal([]byte(b), f); err != nil {
				return SyncNone, nil, err
			}
			c.Features[f.ID] = f
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

// anyReporting reports whether one of the features ids is a reporting meter.
func (s *Store) anyReporting(ctx context.Context, ids []string) (bool, error) {
	vals, err := s.rc.HMGet(ctx, s.key(kFeatures), ids...).Result()
	if err != nil {
		return false, err
	}
	for _, raw := range vals {
		if b, ok := raw.(string); ok {
			var f rating.Feature
			if err := json.Unmarshal([]byte(b), &f); err != nil {
				return false, err
			}
			if f.Meter.Kind == rating.MeterEventBased && f.Meter.Aggregation.Reporting() {
				return true, nil
			}
		}
	}
	return false, nil
}
