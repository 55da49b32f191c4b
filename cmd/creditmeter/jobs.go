package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/lease"
	"github.com/creditmeter/creditmeter/lowbalance"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/webhook"
)

// Background jobs run on one node of the deployment at a time, each under
// its own lease (so they may run on different nodes). A holder that dies is
// replaced after jobLeaseTTL.
const (
	jobLeaseTTL     = 15 * time.Second
	rollupInterval  = time.Minute      // analysts reading usage_daily see it at most this far behind
	expiryInterval  = 30 * time.Second // breakage within a minute of expiry + grace
	lowRepairEvery  = time.Minute      // a lost low-set update is repaired within this
	topUpSweepEvery = 15 * time.Second // unpaid top-ups expire (reservation given back) within this
	rechargeEvery   = 5 * time.Second  // a crossing below the auto-recharge threshold is topped up within this
	webhookEvery    = 5 * time.Second  // a notification a dead node left, a scheduled start: emitted within this
)

// jobs are serve's background jobs and their leases.
type jobs struct {
	rollup, expiry, low, topups, recharge, webhooks *lease.Lease
	// rechargeMetrics are the auto-recharge job's (serve registers them).
	rechargeMetrics *accounts.RechargeMetrics
}

func newJobs(rc redis.UniversalClient, prefix string) (*jobs, error) {
	j := &jobs{}
	var err error
	for name, l := range map[string]**lease.Lease{"rollup-refresh": &j.rollup, "expiry-sweep": &j.expiry, "low-balance": &j.low, "pending-topups": &j.topups, "auto-recharge": &j.recharge, "webhook-sweep": &j.webhooks} {
		if *l, err = lease.New(rc, prefix, name, jobLeaseTTL); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// start runs the jobs until ctx ends; wg waits for them.
func (j *jobs) start(ctx context.Context, wg *sync.WaitGroup, conn driver.Conn, cat *catalogstore.Store, acc *accounts.Accounts, hooks *webhook.Store, notifier *webhook.Notifier, log *slog.Logger) {
	report := func(err error) { log.Warn("lease", "err", err) }
	run := func(l *lease.Lease, job func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Run(ctx, func(ctx context.Context) {
				log.Info("background job started on this node", "lease", l.Key())
				job(ctx)
			}, report)
		}()
	}
	run(j.rollup, func(ctx context.Context) {
		archive.KeepRollupFresh(ctx, conn, rollupInterval, func(err error) { log.Warn("rollup refresh", "err", err) })
	})
	sweep := &accounts.ExpirySweep{Accounts: acc, Log: log, Notify: notifier.ExpiredRange, List: func(ctx context.Context) ([]accounts.SubscriptionRef, error) {
		subs, err := cat.Subscriptions(ctx)
		out := make([]accounts.SubscriptionRef, len(subs))
		for i, s := range subs {
			out[i] = accounts.SubscriptionRef{ID: s.ID, Customer: s.CustomerID}
		}
		return out, err
	}}
	sweep.Ending = &accounts.Ending{Accounts: acc, Catalog: cat, Grace: acc.Store.GraceWindow()}
	run(j.expiry, func(ctx context.Context) { sweep.Run(ctx, expiryInterval) })
	run(j.topups, func(ctx context.Context) { (&accounts.PendingSweep{Accounts: acc, Log: log}).Run(ctx, topUpSweepEvery) })
	recharger := &accounts.Recharger{Accounts: acc, List: sweep.List, Notify: notifier.ObserveRecharge, Metrics: j.rechargeMetrics, Log: log,
		Payment: func(ctx context.Context, s accounts.SubscriptionRef) (*rating.PaymentTerms, error) {
			sub, err := cat.Subscription(ctx, s.ID)
			if err != nil {
				return nil, err
			}
			plan, err := cat.Plan(ctx, sub.PlanID)
			if err != nil || plan.Prepaid == nil {
				return nil, err
			}
			return plan.Prepaid.Payment, nil
		}}
	run(j.recharge, func(ctx context.Context) { recharger.Run(ctx, rechargeEvery) })
	run(j.webhooks, func(ctx context.Context) { webhookSweep(ctx, hooks, notifier, cat, webhookEvery, log) })
	run(j.low, func(ctx context.Context) {
		list := func(ctx context.Context) ([]string, error) {
			subs, err := cat.Subscriptions(ctx)
			ids := make([]string, len(subs))
			for i, s := range subs {
				ids[i] = s.ID
			}
			return ids, err
		}
		lowbalance.KeepLowSetRepaired(ctx, acc.Store, list, lowRepairEvery, func(added, removed int, err error) {
			if err != nil {
				log.Warn("low-balance set repair", "err", err)
			} else {
				log.Warn("low-balance set repaired (a crossing update had been lost)", "added", added, "removed", removed)
			}
		})
	})
}
