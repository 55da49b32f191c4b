package catalogstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/rating"
)

// kSpan is a customer's hash of subscription spans, id -> "startµs:endµs"
// (end -1: open), which the scripts check so no two of a customer's
// subscriptions are active at the same instant.
const kSpan = "custspan"

// StateError refuses a lifecycle change the subscription's state does not
// allow (the API answers 409 with Code).
type StateError struct {
	Code, Field, Message string
}

func (e *StateError) Error() string { return "catalogstore: " + e.Message }

func overlapError(other string) error {
	return &StateError{Code: "subscription_overlap", Field: "schedule",
		Message: fmt.Sprintf("the customer's subscription %s is active in that period: cancel it or change its plan (POST /v1/subscriptions/%s/change-plan) instead of adding another", other, other)}
}

func spanOf(s *rating.Subscription) (start, end int64) {
	end = -1
	if s.EndAt != nil {
		end = s.EndAt.UnixMicro()
	}
	return s.StartAt.UnixMicro(), end
}

// ensureSpans fills the span hash of subscriptions stored before it existed.
func (s *Store) ensureSpans(ctx context.Context, customer string) error {
	n, err := s.rc.HLen(ctx, s.key(kSpan, customer)).Result()
	if err != nil {
		return err
	}
	m, err := s.rc.SCard(ctx, s.key("custsubs", customer)).Result()
	if err != nil || n >= m {
		return err
	}
	subs, err := s.CustomerSubscriptions(ctx, customer)
	if err != nil {
		return err
	}
	for _, sub := range subs {
		a, b := spanOf(sub)
		if err := s.rc.HSetNX(ctx, s.key(kSpan, customer), sub.ID, fmt.Sprintf("%d:%d", a, b)).Err(); err != nil {
			return err
		}
	}
	return nil
}

// CancelSubscription ends subscription id at at (zero: now). An end in the
// past is refused (events were charged under it); an end before the start
// makes a scheduled subscription end at its start (it never runs). The end
// of a subscription not yet ended may be moved.
func (s *Store) CancelSubscription(ctx context.Context, id string, at time.Time) (*rating.Subscription, error) {
	return s.setEnd(ctx, id, func(sub *rating.Subscription, now time.Time) error {
		end, err := endAt(sub, at, now, "at")
		if err != nil {
			return err
		}
		if end.Before(sub.StartAt) {
			end = sub.StartAt
		}
		sub.EndAt = &end
		return nil
	})
}

// ReopenSubscription removes the end of a subscription not yet ended (a
// cancellation withdrawn); one with a plan change is refused.
func (s *Store) ReopenSubscription(ctx context.Context, id string) (*rating.Subscription, error) {
	return s.setEnd(ctx, id, func(sub *rating.Subscription, now time.Time) error {
		if _, err := endAt(sub, time.Time{}, now, "end_at"); err != nil {
			return err
		}
		sub.EndAt = nil
		return nil
	})
}

// subRaw reads a subscription as stored, with the raw JSON its
// compare-and-set scripts check against.
func (s *Store) subRaw(ctx context.Context, id string) (string, *rating.Subscription, error) {
	raw, err := s.rc.HGet(ctx, s.key(kSubs), id).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil, fmt.Errorf("%w: subscription %q", ErrNotFound, id)
	} else if err != nil {
		return "", nil, err
	}
	sub := new(rating.Subscription)
	if err := json.Unmarshal([]byte(raw), sub); err != nil {
		return "", nil, err
	}
	return raw, sub, nil
}

// setEnd stores the subscription as change leaves it, unless its new span
// overlaps another of the customer's.
func (s *Store) setEnd(ctx context.Context, id string, change func(sub *rating.Subscription, now time.Time) error) (_ *rating.Subscription, err error) {
	defer classify(&err)
	for attempt := 0; attempt < 10; attempt++ {
		raw, sub, err := s.subRaw(ctx, id)
		if err != nil {
			return nil, err
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		if err := change(sub, now); err != nil {
			return nil, err
		}
		b, err := json.Marshal(sub)
		if err != nil {
			return nil, err
		}
		if err := s.ensureSpans(ctx, sub.CustomerID); err != nil {
			return nil, err
		}
		a, e := spanOf(sub)
		res, err := lifecycleScript.Run(ctx, s.rc, s.lifecycleKeys(sub.CustomerID, "-"), id, raw, b, a, e,
			"", "", 0, 0, "", "", "", "").StringSlice()
		if err != nil {
			return nil, fmt.Errorf("catalogstore: subscription end: %w", err)
		}
		switch res[0] {
		case "ok":
			sub.Status = sub.StatusAt(now)
			return sub, nil
		case "overlap":
			return nil, overlapError(res[1])
		}
	}
	return nil, ErrBusy
}

func (s *Store) lifecycleKeys(customer, plan string) []string {
	return []string{s.key(kSubs), s.key(kSubKeys), s.key(kSubFP), s.key("plansubs", plan), s.key("custsubs", customer),
		s.key(kVersion), s.key(kPlans), s.key(kChanges), s.key(kSpan, customer)}
}

// endAt checks that sub may end at at (zero: now).
func endAt(sub *rating.Subscription, at, now time.Time, field string) (time.Time, error) {
	if sub.ReplacedBy != "" {
		return time.Time{}, &StateError{Code: "subscription_replaced", Field: "id",
			Message: fmt.Sprintf("subscription %s changes plan to %s at %s; cancel or change %s instead", sub.ID, sub.ReplacedBy, sub.EndAt.Format(time.RFC3339Nano), sub.ReplacedBy)}
	}
	if sub.EndAt != nil && !now.Before(*sub.EndAt) {
		return time.Time{}, &StateError{Code: "subscription_ended", Field: "id",
			Message: fmt.Sprintf("subscription %s ended at %s", sub.ID, sub.EndAt.Format(time.RFC3339Nano))}
	}
	if at.IsZero() {
		return now, nil
	}
	at = at.UTC().Truncate(time.Microsecond)
	if at.Before(now.Add(-time.Minute)) {
		return time.Time{}, &rating.FieldError{Field: field, Code: "invalid", Err: rating.ErrInvalid,
			Message: fmt.Sprintf("%s must not be in the past (events were charged under the subscription), got %s", field, at.Format(time.RFC3339Nano))}
	}
	if at.Before(now) {
		at = now
	}
	return at, nil
}

// PlanChange is the outcome of ChangePlan.
type PlanChange struct {
	Previous     *rating.Subscription // ended at the change
	Subscription *rating.Subscription // the successor
	Plan         *rating.Plan         // the successor's
	Created      bool                 // false: an earlier request made it
}

// ChangePlan moves subscription id to next.PlanID at at (zero: now): id
// ends at at and next, its successor, starts then, in one step. next keeps
// the customer; its currency, billing section and end default to id's; its
// consumption overrides, credit value and included credits are its own
// (none unless given). A repeated request (same Idempotency-Key, or the
// successor's id or plan) returns the change already made.
func (s *Store) ChangePlan(ctx context.Context, id string, next *rating.Subscription, at time.Time, idempotencyKey string) (_ *PlanChange, err error) {
	defer classify(&err)
	if next.PlanID == "" {
		return nil, &rating.FieldError{Field: "plan_id", Code: "required", Message: "plan_id is required", Err: rating.ErrInvalid}
	}
	if next.Schedule.Start != "" || next.Schedule.At != nil || next.CustomerID != "" || !next.StartAt.IsZero() || next.EndAt != nil {
		return nil, &rating.FieldError{Field: "at", Code: "invalid", Err: rating.ErrInvalid,
			Message: "a plan change takes the customer and end from the subscription and its start from at"}
	}
	fp, err := fingerprint(next)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 10; attempt++ {
		raw, old, err := s.subRaw(ctx, id)
		if err != nil {
			return nil, err
		}
		if old.ReplacedBy != "" {
			if res, err := s.existing(ctx, old.ReplacedBy, fp); err == nil && (next.ID == "" || next.ID == old.ReplacedBy) {
				old.Status = old.StatusAt(s.now())
				return &PlanChange{Previous: old, Subscription: res.Subscription, Plan: res.Plan}, nil
			}
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		when, err := endAt(old, at, now, "at")
		if err != nil {
			return nil, err
		}
		if when.Before(old.StartAt) {
			return nil, &rating.FieldError{Field: "at", Code: "invalid", Err: rating.ErrInvalid,
				Message: fmt.Sprintf("the subscription starts at %s: cancel it and create another instead", old.StartAt.Format(time.RFC3339Nano))}
		}
		if old.EndAt != nil && !when.Before(*old.EndAt) {
			return nil, &rating.FieldError{Field: "at", Code: "invalid", Err: rating.ErrInvalid,
				Message: fmt.Sprintf("the subscription ends at %s, before the change", old.EndAt.Format(time.RFC3339Nano))}
		}
		n := *next
		n.CustomerID = old.CustomerID
		if n.Currency == "" {
			n.Currency = old.Currency
		}
		if n.Billing == (rating.Billing{}) {
			n.Billing = old.Billing
		}
		n.Schedule = rating.Schedule{Start: rating.StartAt, At: &when}
		n.EndAt = old.EndAt
		c, planRaw, err := s.refsRaw(ctx, n.CustomerID, n.PlanID, featureIDs(n.Consumption))
		if err != nil {
			return nil, err
		}
		plan, err := rating.PrepareSubscription(&n, c, now)
		if err != nil {
			return nil, err
		}
		if n.ID == "" {
			n.ID = "sub_" + randomHex(12)
		}
		n.Replaces = old.ID
		old.EndAt, old.ReplacedBy = &when, n.ID
		ob, err := json.Marshal(old)
		if err != nil {
			return nil, err
		}
		nb, err := json.Marshal(&n)
		if err != nil {
			return nil, err
		}
		if err := s.ensureSpans(ctx, old.CustomerID); err != nil {
			return nil, err
		}
		oa, oe := spanOf(old)
		na, ne := spanOf(&n)
		res, err := lifecycleScript.Run(ctx, s.rc, s.lifecycleKeys(old.CustomerID, plan.ID), old.ID, raw, ob, oa, oe,
			n.ID, nb, na, ne, plan.ID, planRaw, idempotencyKey, fp).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("catalogstore: change plan: %w", err)
		}
		switch res[0] {
		case "ok":
			old.Status, n.Status = old.StatusAt(now), n.StatusAt(now)
			return &PlanChange{Previous: old, Subscription: &n, Plan: plan, Created: true}, nil
		case "overlap":
			return nil, overlapError(res[1])
		case "exists":
			r, err := s.existing(ctx, res[1], fp)
			if err != nil {
				return nil, err
			}
			prev, err := s.Subscription(ctx, id)
			if err != nil {
				return nil, err
			}
			return &PlanChange{Previous: prev, Subscription: r.Subscription, Plan: r.Plan}, nil
		}
		// changed or plan_changed: read again.
	}
	return nil, ErrBusy
}
