package webhook

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/rating"
)

// SubscriptionStarted: a subscription became active (at creation when it
// starts at once, else at its start, emitted when a node next looks).
const SubscriptionStarted = "subscription.started"

func init() { Types = append(Types, SubscriptionStarted) }

// StartedEvent is the subscription.started event of sub; its id is the
// subscription's, so every emitter (the API at creation, any node's
// sweep) makes the same one.
func StartedEvent(sub *rating.Subscription) Event {
	d := Data{Subscription: sub.ID, Customer: sub.CustomerID, Plan: sub.PlanID, StartsAt: sub.StartAt.UTC().Format(time.RFC3339Nano)}
	return Event{ID: EventID(SubscriptionStarted, sub.ID), Type: SubscriptionStarted, Data: d}
}

// CreatedEvent is the subscription.created event of sub, as the API emits
// it (id: the subscription's).
func CreatedEvent(sub *rating.Subscription) Event {
	d := Data{Subscription: sub.ID, Customer: sub.CustomerID, Plan: sub.PlanID}
	if !sub.StartAt.IsZero() {
		d.StartsAt = sub.StartAt.UTC().Format(time.RFC3339Nano)
	}
	return Event{ID: EventID(SubscriptionCreated, sub.ID), Type: SubscriptionCreated, Data: d}
}

// EndEvent is the event of sub's end: subscription.changed when a plan
// change replaced it, else subscription.ended. Its id carries the end, so
// a moved end is a new event; false when sub has no end.
func EndEvent(sub *rating.Subscription) (Event, bool) {
	if sub.EndAt == nil {
		return Event{}, false
	}
	typ := SubscriptionEnded
	if sub.ReplacedBy != "" {
		typ = SubscriptionChanged
	}
	end := sub.EndAt.UTC().Format(time.RFC3339Nano)
	d := Data{Subscription: sub.ID, Customer: sub.CustomerID, Plan: sub.PlanID, EndsAt: end, ReplacedBy: sub.ReplacedBy}
	return Event{ID: EventID(typ, sub.ID, end), Type: typ, Data: d}, true
}

// Lifecycle emits the subscription events the catalog implies: created,
// started once a subscription's start has passed (also when no node ran at
// that instant), and changed/ended once it has an end, for what the API's
// own emission did not (a node that died between the catalog write and its
// emission). Run it on one node at a time (serve: under a lease); two at
// once still make each event once (ids are stable, Emit stores one).
//
// What was emitted is remembered in the outbox's hash "life" (fields
// c:<sub>, s:<sub>, e:<sub> = the end emitted) and in memory, so a pass costs
// nothing for a subscription already told. Starts and ends more than
// Lookback ago (default the outbox retention) are not emitted: after an
// upgrade, old subscriptions are not announced again (one that started
// within the lookback is announced started once, late: starts_at says
// when). The fields of a subscription that ended and was created more than
// Lookback ago are dropped, so the hash holds the lookback's subscriptions
// and the live ones, not every subscription ever made.
type Lifecycle struct {
	Store    *Store
	Lookback time.Duration

	mu     sync.Mutex
	done   map[string]bool // "c:<sub>", "s:<sub>" and "e:<sub>:<end>" emitted
	pruned map[string]bool // ended subscriptions whose fields were dropped
}

// Once emits what subs imply and is not yet told; it returns how many
// events it emitted.
func (l *Lifecycle) Once(ctx context.Context, subs []*rating.Subscription) (int, error) {
	now := l.Store.now()
	back := l.Lookback
	if back <= 0 {
		back = l.Store.ret
	}
	type todo struct {
		field, memo, value string
		e                  Event
	}
	var work []todo
	var old []string // fields past the lookback: never read again, dropped once per process
	l.mu.Lock()
	if l.done == nil {
		l.done, l.pruned = map[string]bool{}, map[string]bool{}
	}
	for _, s := range subs {
		if !s.CreatedAt.IsZero() && now.Sub(s.CreatedAt) < back && !l.done["c:"+s.ID] {
			work = append(work, todo{field: "c:" + s.ID, memo: "c:" + s.ID, value: "1", e: CreatedEvent(s)})
		}
		if !s.StartAt.After(now) && now.Sub(s.StartAt) < back && !l.done["s:"+s.ID] {
			work = append(work, todo{field: "s:" + s.ID, memo: "s:" + s.ID, value: "1", e: StartedEvent(s)})
		}
		e, ok := EndEvent(s)
		if ok && now.Sub(*s.EndAt) < back {
			memo := "e:" + s.ID + ":" + e.Data.EndsAt
			if !l.done[memo] {
				work = append(work, todo{field: "e:" + s.ID, memo: memo, value: e.Data.EndsAt, e: e})
			}
		}
		if ok && now.Sub(*s.EndAt) >= back && now.Sub(s.CreatedAt) >= back && !l.pruned[s.ID] {
			old = append(old, "c:"+s.ID, "s:"+s.ID, "e:"+s.ID)
			l.pruned[s.ID] = true
			delete(l.done, "c:"+s.ID)
			delete(l.done, "s:"+s.ID)
			delete(l.done, "e:"+s.ID+":"+e.Data.EndsAt)
		}
	}
	l.mu.Unlock()
	if len(old) > 0 {
		// an ended subscription past the lookback is never announced again
		if err := l.Store.rc.HDel(ctx, l.Store.kLife(), old...).Err(); err != nil {
			return 0, err
		}
	}
	if len(work) == 0 {
		return 0, nil
	}
	pipe := l.Store.rc.Pipeline()
	cmds := make([]*redis.StringCmd, len(work))
	for i, w := range work {
		cmds[i] = pipe.HGet(ctx, l.Store.kLife(), w.field)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	n := 0
	var errs []error
	for i, w := range work {
		if cmds[i].Val() == w.value {
			l.remember(w.memo)
			continue
		}
		// emit, then remember: a crash in between emits the same id again
		if err := l.Store.Emit(ctx, w.e); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := l.Store.rc.HSet(ctx, l.Store.kLife(), w.field, w.value).Err(); err != nil {
			errs = append(errs, err)
			continue
		}
		l.remember(w.memo)
		n++
	}
	return n, errors.Join(errs...)
}

func (l *Lifecycle) remember(memo string) {
	l.mu.Lock()
	l.done[memo] = true
	l.mu.Unlock()
}
