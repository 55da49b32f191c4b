// Package enginetest has stand-ins for the engine's services, for benchmarks
// and tests of the engine's own work (decode, rate, grouping, row building)
// and of its control flow (faults.go: services that fail on cue) without
// I/O. They are never the only test of an adapter.
package enginetest

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/ingest"
)

// NopSource fetches nothing and commits anything.
type NopSource struct{}

// Fetch returns no messages.
func (NopSource) Fetch(context.Context, int, time.Duration) ([]kafka.Message, error) { return nil, nil }

// Commit accepts any offsets.
func (NopSource) Commit(context.Context, []kafka.Message) error { return nil }

// NopDLQ drops dead letters.
type NopDLQ struct{}

// SendDLQ accepts and drops dls.
func (NopDLQ) SendDLQ(context.Context, []ingest.DeadLetter) error { return nil }

// NopArchive drops rows.
type NopArchive struct{}

// WriteUsage accepts and drops rows.
func (NopArchive) WriteUsage(context.Context, []archive.RatedRow) error { return nil }

// WriteLedger accepts and drops rows.
func (NopArchive) WriteLedger(context.Context, []archive.LedgerRow) error { return nil }

// AllApplied answers every line as applied from one grant, without Redis.
type AllApplied struct{}

// Apply applies every line from grant g1.
func (AllApplied) Apply(_ context.Context, bs []balance.Batch) ([]balance.BatchResult, error) {
	out := make([]balance.BatchResult, len(bs))
	for i, b := range bs {
		out[i].Subscription = b.Subscription
		out[i].Lines = make([]balance.LineResult, len(b.Lines))
		for j, l := range b.Lines {
			out[i].Lines[j] = balance.LineResult{Status: balance.Applied, Draws: []balance.Draw{{Grant: "g1", Amount: l.Credits}}}
		}
	}
	return out, nil
}
