package accounts

import (
	"context"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
)

// Archive stores ledger entries (archive.Writer).
type Archive interface {
	WriteLedger(ctx context.Context, rows []archive.LedgerRow) error
}

// Repairer repairs a subscription whose Redis state lost acknowledged
// writes (reconcile.Repairer): it brings sub back to the archive's truth if
// it disagrees and returns Redis's ledger seq after it.
type Repairer interface {
	Repair(ctx context.Context, sub string) (seq int64, repaired bool, err error)
}

func credits(a credit.Amount) float64 { return float64(a) / float64(credit.Unit) }
