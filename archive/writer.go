package archive

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/fault"
)

// Status of a rated line.
const (
	StatusApplied  = "applied"  // fully drawn from grants
	StatusUnfunded = "unfunded" // shortfall recorded as unfunded usage
	StatusOverage  = "overage"  // shortfall taken as negative balance
)

// RatedRow is one rated line of one event: a row of rated_usage.
type RatedRow struct {
	EventID        string
	Line           uint16 // index of the line within its event (one event may match several features)
	CustomerID     string
	SubscriptionID string
	Feature        string
	EventName      string
	Quantity       decimal.Decimal // meter units (emails, tokens)
	Credits        credit.Amount   // credits the line costs
	Funded         credit.Amount   // drawn from grants
	Unfunded       credit.Amount   // not drawn: unfunded usage or overage
	CreditCurrency string
	MoneyValue     decimal.Decimal // Credits × credit value
	MoneyCurrency  string
	EventTime      time.Time
	RatedAt        time.Time
	GrantIDs       []string
	GrantAmounts   []credit.Amount
	Status         string
	Topic          string
	Partition      int32
	Offset         int64
}

// Ledger entry kinds.
const (
	KindGrant      = "grant"
	KindTopUp      = "topup"
	KindAdjustment = "adjustment"
	KindUsage      = "usage"
	KindExpiry     = "expiry"
)

// LedgerRow is one immutable credit-ledger entry: a row of credit_ledger.
type LedgerRow struct {
	SubscriptionID string
	Seq            uint64 // per-subscription sequence, from the balance store
	CustomerID     string
	Kind           string
	Amount         credit.Amount // signed change of the balance
	BalanceAfter   credit.Amount
	CreditCurrency string
	GrantID        string
	GrantType      string
	MoneyAmount    decimal.Decimal // charge of a top-up or purchased grant
	MoneyCurrency  string
	EventCount     uint64 // usage entries: events summed into the entry
	Reason         string
	Actor          string
	IdempotencyKey string
	CreatedAt      time.Time
	// Snapshot is the balance account's state after the entry (JSON), on
	// the last entry of each balance change; see balance.Entry.Snapshot.
	Snapshot string
}

// ErrInvalidRow is returned for a row that can never be inserted; retrying is useless.
var ErrInvalidRow = fault.New(fault.Invalid, "archive: invalid row")

// The times a DateTime column holds: seconds since 1970 in 32 bits. Second 0
// reads as an empty date and later times wrap, so both are refused.
var (
	MinTime = time.Unix(1, 0).UTC()                       // first storable second
	MaxTime = time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC) // exclusive
)

// InRange reports whether t can be stored in a DateTime column as it is.
func InRange(t time.Time) bool { return !t.Before(MinTime) && t.Before(MaxTime) }

// Writer inserts rows in batches. Every insert is safe to repeat.
type Writer struct {
	conn driver.Conn
}

// NewWriter wraps an open connection whose database has been migrated.
func NewWriter(conn driver.Conn) *Writer { return &Writer{conn: conn} }

// WriteUsage inserts rated lines in one batch.
func (w *Writer) WriteUsage(ctx context.Context, rows []RatedRow) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := w.conn.PrepareBatch(ctx, `INSERT INTO rated_usage (event_id, line, customer_id, subscription_id, feature, event_name,
		quantity, credits, funded_credits, unfunded_credits, credit_currency, money_value, money_currency,
		event_time, event_time_ms, rated_at, grant_ids, grant_amounts, status, source_topic, source_partition, source_offset, version)`)
	if err != nil {
		return fmt.Errorf("archive: prepare rated_usage: %w", err)
	}
	version := uint64(time.Now().UnixNano())
	for i := range rows {
		r := &rows[i]
		if r.EventID == "" || r.SubscriptionID == "" || r.EventTime.IsZero() {
			_ = b.Abort()
			return fmt.Errorf("%w: rated_usage row %d lacks event id, subscription or time", ErrInvalidRow, i)
		}
		if !InRange(r.EventTime) || !InRange(r.RatedAt) {
			_ = b.Abort()
			return fmt.Errorf("%w: rated_usage row %d: event time %s or rated time %s outside %s..%s", ErrInvalidRow, i,
				r.EventTime.UTC().Format(time.RFC3339Nano), r.RatedAt.UTC().Format(time.RFC3339Nano), MinTime.Format(time.RFC3339), MaxTime.Format(time.RFC3339))
		}
		amounts := make([]decimal.Decimal, len(r.GrantAmounts))
		for j, a := range r.GrantAmounts {
			amounts[j] = a.Decimal()
		}
		grants := r.GrantIDs
		if grants == nil {
			grants = []string{}
		}
		et := r.EventTime.UTC()
		if err := b.Append(r.EventID, r.Line, r.CustomerID, r.SubscriptionID, r.Feature, r.EventName,
			r.Quantity, r.Credits.Decimal(), r.Funded.Decimal(), r.Unfunded.Decimal(), r.CreditCurrency, r.MoneyValue, r.MoneyCurrency,
			et.Truncate(time.Second), uint16(et.Nanosecond()/1e6), r.RatedAt.UTC(), grants, amounts, r.Status,
			r.Topic, r.Partition, r.Offset, version); err != nil {
			_ = b.Abort()
			return fmt.Errorf("%w: rated_usage row %d: %v", ErrInvalidRow, i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("archive: insert %d rated_usage rows: %w", len(rows), err)
	}
	return nil
}

// WriteLedger inserts ledger entries in one batch. An archived entry is
// immutable: entries already archived with the same content are skipped,
// and when any entry of rows has the (subscription, seq) of an archived
// entry with other content, nothing is inserted and the error is a
// *LedgerConflictError (errors.Is ErrLedgerConflict): the balance store
// reused a sequence number, so it lost writes and must be repaired.
func (w *Writer) WriteLedger(ctx context.Context, rows []LedgerRow) error {
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		r := &rows[i]
		if r.SubscriptionID == "" || r.Seq == 0 || r.Kind == "" {
			return fmt.Errorf("%w: credit_ledger row %d lacks subscription, seq or kind", ErrInvalidRow, i)
		}
		if !InRange(r.CreatedAt) {
			return fmt.Errorf("%w: credit_ledger row %d: time %s outside %s..%s", ErrInvalidRow, i,
				r.CreatedAt.UTC().Format(time.RFC3339Nano), MinTime.Format(time.RFC3339), MaxTime.Format(time.RFC3339))
		}
	}
	fresh, err := CheckLedger(ctx, w.conn, rows)
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		return nil
	}
	b, err := w.conn.PrepareBatch(ctx, `INSERT INTO credit_ledger (subscription_id, seq, customer_id, kind, amount, balance_after,
		credit_currency, grant_id, grant_type, money_amount, money_currency, event_count, reason, actor, idempotency_key, created_at,
		snapshot, version)`)
	if err != nil {
		return fmt.Errorf("archive: prepare credit_ledger: %w", err)
	}
	version := firstWins(time.Now())
	for _, r := range fresh {
		if err := b.Append(r.SubscriptionID, r.Seq, r.CustomerID, r.Kind, r.Amount.Decimal(), r.BalanceAfter.Decimal(),
			r.CreditCurrency, r.GrantID, r.GrantType, r.MoneyAmount, r.MoneyCurrency, r.EventCount, r.Reason, r.Actor,
			r.IdempotencyKey, r.CreatedAt.UTC(), r.Snapshot, version); err != nil {
			_ = b.Abort()
			return fmt.Errorf("%w: credit_ledger row seq %d of %s: %v", ErrInvalidRow, r.Seq, r.SubscriptionID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("archive: insert %d credit_ledger rows: %w", len(fresh), err)
	}
	return nil
}

// firstWins is the version of credit_ledger rows: it decreases with time,
// so where two writers race past CheckLedger, ReplacingMergeTree keeps the
// entry archived first.
func firstWins(t time.Time) uint64 { return math.MaxUint64 - uint64(t.UnixNano()) }
