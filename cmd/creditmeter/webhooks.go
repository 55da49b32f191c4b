package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/webhook"
)

// newWebhooks builds serve's webhook outbox, its dispatcher and the
// notifier that turns balance changes into events.
func newWebhooks(cat *catalog, bal *balance.Store, cfg config.Config, log *slog.Logger) (*webhook.Store, *webhook.Dispatcher, *webhook.Notifier, error) {
	hooks, err := webhook.NewStore(cat.rc, cfg.Engine.KeyPrefix, webhook.Options{})
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := webhook.NewDispatcher(hooks, webhook.DispatcherOptions{Schedule: cfg.Engine.WebhookSchedule, Timeout: cfg.Engine.WebhookTimeout, Log: log})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("setting --webhook-retry-schedule or --webhook-timeout: %w", err)
	}
	n := &webhook.Notifier{Emitter: hooks, Ledger: bal, Notes: bal, Log: log, Customer: func(ctx context.Context, sub string) (string, error) {
		s, err := cat.store.Subscription(ctx, sub)
		if err != nil {
			return "", err
		}
		return s.CustomerID, nil
	}}
	return hooks, d, n, nil
}

// observers tells every observer of Accounts.
type observers []accounts.AccountObserver

func (o observers) ObserveTopUp(req balance.TopUpRequest, res balance.ChangeResult, err error) {
	for _, x := range o {
		x.ObserveTopUp(req, res, err)
	}
}

func (o observers) ObserveAdjust(req balance.AdjustRequest, res balance.ChangeResult, err error) {
	for _, x := range o {
		x.ObserveAdjust(req, res, err)
	}
}

// webhookSweep is the repair of emissions a node that died left: the
// balance notifications still recorded in accounts, and the subscription
// events the catalog implies (subscription.started at a scheduled start,
// changed/ended). Run on one node at a time (lease "webhook-sweep").
func webhookSweep(ctx context.Context, hooks *webhook.Store, n *webhook.Notifier, cat *catalogstore.Store, every time.Duration, log *slog.Logger) {
	life := &webhook.Lifecycle{Store: hooks}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		subs, err := cat.Subscriptions(ctx)
		if err == nil {
			ids := make([]string, len(subs))
			for i, s := range subs {
				ids[i] = s.ID
			}
			var found, told int
			var e1, e2 error
			found, e1 = n.Sweep(ctx, ids)
			told, e2 = life.Once(ctx, subs)
			err = errors.Join(e1, e2)
			if found > 0 || told > 0 {
				log.Info("webhooks: sweep emitted", "subscriptions_with_notifications", found, "subscription_events", told)
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("webhooks: sweep", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dieBeforeNotify names the test-only environment variable that makes
// serve kill itself (SIGKILL, as kill -9 does) when the engine is about to
// emit the notifications of a batch that crossed the low-balance
// threshold: after the balance write and the archive, before the emission
// and the offset commit (TestServeKilledBeforeEmission).
const dieBeforeNotify = "CREDITMETER_TEST_DIE_BEFORE_NOTIFY"

// notifyBatches is the engine's Notify.
func notifyBatches(n *webhook.Notifier) func(context.Context, []balance.BatchResult) error {
	if os.Getenv(dieBeforeNotify) != "1" {
		return n.Batches
	}
	return func(ctx context.Context, rs []balance.BatchResult) error {
		for _, r := range rs {
			if r.Crossing == balance.WentLow {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // SIGKILL cannot be caught: the process ends here
			}
		}
		return n.Batches(ctx, rs)
	}
}
