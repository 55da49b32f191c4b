package accounts

import (
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
)

// LedgerRow is the archive row of a balance ledger entry (the engine's
// mapping: a top-up creates a purchased grant).
func LedgerRow(sub, customer string, e balance.Entry) archive.LedgerRow {
	r := archive.LedgerRow{
		SubscriptionID: sub, Seq: uint64(e.Seq), CustomerID: customer, Kind: e.Kind,
		Amount: e.Amount, BalanceAfter: e.Balance, GrantID: e.Grant, EventCount: uint64(max(e.Events, 0)),
		GrantType: e.Fields["type"], Reason: e.Fields["reason"], Actor: e.Fields["actor"],
		IdempotencyKey: e.Fields["key"], MoneyCurrency: e.Fields["currency"], CreatedAt: e.Time, Snapshot: e.Snapshot,
	}
	if r.GrantType == "" {
		switch r.Kind {
		case archive.KindTopUp:
			r.GrantType = string(balance.Purchased)
		case archive.KindAdjustment:
			if e.Amount > 0 {
				r.GrantType = string(balance.Adjustment)
			}
		}
	}
	if v, ok := e.Fields["charge"]; ok {
		if m, err := decimal.NewFromString(v); err == nil {
			r.MoneyAmount = m
		}
	}
	return r
}
