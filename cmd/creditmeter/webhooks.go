package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/internal/config"
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
	n := &webhook.Notifier{Emitter: hooks, Ledger: bal, Log: log, Customer: func(ctx context.Context, sub string) (string, error) {
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
