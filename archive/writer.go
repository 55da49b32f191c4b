package archive

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
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
	MoneyValue     decimal.Decimal // Credits × credit value; at most 9 decimals (stored as Int64 nano-units)
	MoneyCurrency  string
	EventTime      time.Time
	RatedAt        time.Time
	GrantIDs       []string
	GrantAmounts   []credit.Amount
	// DimKeys and DimValues are the event's dimensions, in the event's
	// order (numbers as their exact decimal text); equal lengths.
	DimKeys, DimValues []string
	Status             string
	Topic              string
	Partition          int32
	Offset             int64
	// UniqueValue is the value a UNIQUE_COUNT line counted first in its
	// billing period [UniquePeriod, UniquePeriodEnd) (a zero period
	// otherwise; '' may be the value counted): what balance.Store.Repair
	// rebuilds the period's set from.
	UniqueValue                   string
	UniquePeriod, UniquePeriodEnd time.Time
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
	MoneyAmount    decimal.Decimal // charge of a top-up or purchased grant (Decimal(38, 9): unrounded, may exceed Int64 nano-units)
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
	c := usagePool.Get().(*usageColumns)
	defer usagePool.Put(c)
	if err := c.fill(rows, uint64(time.Now().UnixNano())); err != nil {
		return err
	}
	b, err := w.conn.PrepareBatch(ctx, `INSERT INTO rated_usage (event_id, line, customer_id, subscription_id, feature, event_name,
		quantity_mant, quantity_scale, credits_micro, funded_credits_micro, unfunded_credits_micro, credit_currency, money_value_nano, money_currency,
		event_time, event_time_ms, rated_at, grant_ids, grant_amounts_micro, status, source_topic, source_partition, source_offset, version,
		dim_keys, dim_values, unique_value, unique_period_ms, unique_period_end_ms)`)
	if err != nil {
		return fmt.Errorf("archive: prepare rated_usage: %w", err)
	}
	for i, col := range c.slices() {
		var err error
		if rows, ok := col.([]any); ok {
			// An array column, a row at a time: the driver takes a
			// whole [][]T column only by reflection, element by element.
			bc := b.Column(i)
			for _, r := range rows {
				if err = bc.AppendRow(r); err != nil {
					break
				}
			}
		} else {
			err = b.Column(i).Append(col)
		}
		if err != nil {
			_ = b.Abort()
			return fmt.Errorf("%w: rated_usage column %d: %v", ErrInvalidRow, i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("archive: insert %d rated_usage rows: %w", len(rows), err)
	}
	return nil
}

// usageColumns are a batch of rated_usage by column: appended a column at a
// time, the driver boxes no value per row. Reused through usagePool.
type usageColumns struct {
	eventID, customer, sub, feature, eventName, creditCur, moneyCur, status, topic []string
	line, ms                                                                       []uint16
	qScale                                                                         []uint8
	qMant, credits, funded, unfunded, money, offset                                []int64
	eventTime, ratedAt                                                             []time.Time
	// The array columns: per row a []*string or []*int64 (the driver's
	// AppendRow takes those without boxing each element), or emptyStrs.
	grantIDs, dimKeys, dimValues, grantAmounts []any
	amounts                                    []int64   // what grantAmounts point to
	strs                                       []*string // backs the rows of grantIDs, dimKeys, dimValues
	amountPtrs                                 []*int64  // backs the rows of grantAmounts
	partition                                  []int32
	version                                    []uint64
	uniqueValue                                []string
	uniquePeriod, uniquePeriodEnd              []int64
}

var usagePool = sync.Pool{New: func() any { return new(usageColumns) }}

// emptyStrs and emptyInts are an empty array row, boxed once.
var emptyStrs, emptyInts any = []*string{}, []*int64{}

// fill checks rows and lays them out by column.
func (c *usageColumns) fill(rows []RatedRow, version uint64) error {
	n, nAmounts, nStrs := len(rows), 0, 0
	for i := range rows {
		nAmounts += len(rows[i].GrantAmounts)
		nStrs += len(rows[i].GrantIDs) + len(rows[i].DimKeys) + len(rows[i].DimValues)
	}
	// Never grown below: the rows' pointers into them must stay valid.
	c.amounts, c.amountPtrs = slices.Grow(c.amounts[:0], nAmounts), slices.Grow(c.amountPtrs[:0], nAmounts)
	c.strs = slices.Grow(c.strs[:0], nStrs)
	for _, s := range []*[]string{&c.eventID, &c.customer, &c.sub, &c.feature, &c.eventName, &c.creditCur, &c.moneyCur, &c.status, &c.topic} {
		*s = slices.Grow((*s)[:0], n)
	}
	for _, s := range []*[]int64{&c.qMant, &c.credits, &c.funded, &c.unfunded, &c.money, &c.offset} {
		*s = slices.Grow((*s)[:0], n)
	}
	c.line, c.ms = slices.Grow(c.line[:0], n), slices.Grow(c.ms[:0], n)
	c.qScale = slices.Grow(c.qScale[:0], n)
	c.eventTime, c.ratedAt = slices.Grow(c.eventTime[:0], n), slices.Grow(c.ratedAt[:0], n)
	c.grantIDs, c.grantAmounts = slices.Grow(c.grantIDs[:0], n), slices.Grow(c.grantAmounts[:0], n)
	c.dimKeys, c.dimValues = slices.Grow(c.dimKeys[:0], n), slices.Grow(c.dimValues[:0], n)
	c.partition, c.version = slices.Grow(c.partition[:0], n), slices.Grow(c.version[:0], n)
	c.uniqueValue, c.uniquePeriod, c.uniquePeriodEnd = slices.Grow(c.uniqueValue[:0], n), slices.Grow(c.uniquePeriod[:0], n), slices.Grow(c.uniquePeriodEnd[:0], n)
	for i := range rows {
		r := &rows[i]
		if err := checkRated(r); err != nil {
			return fmt.Errorf("%w: rated_usage row %d: %v", ErrInvalidRow, i, err)
		}
		money, ok := FixedInt64(r.MoneyValue, MoneyScale)
		if !ok {
			return fmt.Errorf("%w: rated_usage row %d: money value %s is not a whole number of 10^-9 units within Int64", ErrInvalidRow, i, r.MoneyValue)
		}
		qm, qs, ok := quantityParts(r.Quantity)
		if !ok {
			return fmt.Errorf("%w: rated_usage row %d: quantity %s beyond Int64", ErrInvalidRow, i, r.Quantity)
		}
		amounts := emptyInts
		if len(r.GrantAmounts) > 0 {
			lo := len(c.amountPtrs)
			for _, a := range r.GrantAmounts {
				c.amounts = append(c.amounts, int64(a))
				c.amountPtrs = append(c.amountPtrs, &c.amounts[len(c.amounts)-1])
			}
			amounts = c.amountPtrs[lo:len(c.amountPtrs):len(c.amountPtrs)]
		}
		et := r.EventTime.UTC()
		c.eventID = append(c.eventID, r.EventID)
		c.line = append(c.line, r.Line)
		c.customer = append(c.customer, r.CustomerID)
		c.sub = append(c.sub, r.SubscriptionID)
		c.feature = append(c.feature, r.Feature)
		c.eventName = append(c.eventName, r.EventName)
		c.qMant, c.qScale = append(c.qMant, qm), append(c.qScale, qs)
		c.credits = append(c.credits, int64(r.Credits))
		c.funded = append(c.funded, int64(r.Funded))
		c.unfunded = append(c.unfunded, int64(r.Unfunded))
		c.creditCur = append(c.creditCur, r.CreditCurrency)
		c.money = append(c.money, money)
		c.moneyCur = append(c.moneyCur, r.MoneyCurrency)
		c.eventTime = append(c.eventTime, et.Truncate(time.Second))
		c.ms = append(c.ms, uint16(et.Nanosecond()/1e6))
		c.ratedAt = append(c.ratedAt, r.RatedAt.UTC())
		c.grantIDs = append(c.grantIDs, c.strRow(r.GrantIDs))
		c.grantAmounts = append(c.grantAmounts, amounts)
		c.status = append(c.status, r.Status)
		c.topic = append(c.topic, r.Topic)
		c.partition = append(c.partition, r.Partition)
		c.offset = append(c.offset, r.Offset)
		c.version = append(c.version, version)
		c.dimKeys = append(c.dimKeys, c.strRow(r.DimKeys))
		c.dimValues = append(c.dimValues, c.strRow(r.DimValues))
		var up, upe int64
		if !r.UniquePeriodEnd.IsZero() { // '' is a value too: the period marks a count
			up, upe = r.UniquePeriod.UnixMilli(), r.UniquePeriodEnd.UnixMilli()
		}
		c.uniqueValue = append(c.uniqueValue, r.UniqueValue)
		c.uniquePeriod, c.uniquePeriodEnd = append(c.uniquePeriod, up), append(c.uniquePeriodEnd, upe)
	}
	return nil
}

// strRow is an array row of the strings ss, by pointer from c.strs.
func (c *usageColumns) strRow(ss []string) any {
	if len(ss) == 0 {
		return emptyStrs
	}
	lo := len(c.strs)
	for i := range ss {
		c.strs = append(c.strs, &ss[i])
	}
	return c.strs[lo:len(c.strs):len(c.strs)]
}

// slices are the columns in the INSERT's order.
func (c *usageColumns) slices() []any {
	return []any{c.eventID, c.line, c.customer, c.sub, c.feature, c.eventName, c.qMant, c.qScale, c.credits, c.funded, c.unfunded,
		c.creditCur, c.money, c.moneyCur, c.eventTime, c.ms, c.ratedAt, c.grantIDs, c.grantAmounts, c.status, c.topic,
		c.partition, c.offset, c.version, c.dimKeys, c.dimValues, c.uniqueValue, c.uniquePeriod, c.uniquePeriodEnd}
}

// checkRated refuses a row that cannot be archived as it is.
func checkRated(r *RatedRow) error {
	switch {
	case r.EventID == "" || r.SubscriptionID == "" || r.EventTime.IsZero():
		return errors.New("lacks event id, subscription or time")
	case !InRange(r.EventTime) || !InRange(r.RatedAt):
		return fmt.Errorf("event time %s or rated time %s outside %s..%s", r.EventTime.UTC().Format(time.RFC3339Nano),
			r.RatedAt.UTC().Format(time.RFC3339Nano), MinTime.Format(time.RFC3339), MaxTime.Format(time.RFC3339))
	case !r.Credits.Valid() || !r.Funded.Valid() || !r.Unfunded.Valid():
		return fmt.Errorf("credits %d, funded %d or unfunded %d micro-credits beyond ±%s", r.Credits, r.Funded, r.Unfunded, credit.MaxAmount)
	case len(r.GrantIDs) != len(r.GrantAmounts):
		return fmt.Errorf("%d grant ids but %d grant amounts", len(r.GrantIDs), len(r.GrantAmounts))
	case len(r.DimKeys) != len(r.DimValues):
		return fmt.Errorf("%d dimension keys but %d values", len(r.DimKeys), len(r.DimValues))
	}
	for _, a := range r.GrantAmounts {
		if !a.Valid() {
			return fmt.Errorf("grant amount %d micro-credits beyond ±%s", a, credit.MaxAmount)
		}
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
		if !r.Amount.Valid() || !r.BalanceAfter.Valid() {
			return fmt.Errorf("%w: credit_ledger row %d: amount %d or balance %d micro-credits beyond ±%s", ErrInvalidRow, i,
				r.Amount, r.BalanceAfter, credit.MaxAmount)
		}
	}
	fresh, err := CheckLedger(ctx, w.conn, rows)
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		return nil
	}
	b, err := w.conn.PrepareBatch(ctx, `INSERT INTO credit_ledger (subscription_id, seq, customer_id, kind, amount_micro, balance_after_micro,
		credit_currency, grant_id, grant_type, money_amount, money_currency, event_count, reason, actor, idempotency_key, created_at,
		snapshot, version)`)
	if err != nil {
		return fmt.Errorf("archive: prepare credit_ledger: %w", err)
	}
	version := firstWins(time.Now())
	for _, r := range fresh {
		if err := b.Append(r.SubscriptionID, r.Seq, r.CustomerID, r.Kind, int64(r.Amount), int64(r.BalanceAfter),
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
