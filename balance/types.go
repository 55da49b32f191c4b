package balance

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/internal/redisx"
)

// Policy says what usage beyond the available credits does (defined once,
// in credit).
type Policy = credit.OveragePolicy

// Policies.
const (
	Overage  = credit.Overage
	Unfunded = credit.Unfunded
)

// Sentinel errors. Errors wrapping ErrUnavailable are worth retrying;
// every write is idempotent, so a retry never counts twice.
var (
	ErrUnavailable         = fmt.Errorf("balance: %w", redisx.ErrUnavailable) // the classification shared with the catalog
	ErrUnknownSubscription = errors.New("balance: unknown subscription")
	ErrConflict            = fault.New(fault.Conflict, "balance: conflict")
	ErrInsufficientBalance = fault.New(fault.Invalid, "balance: insufficient balance")
	ErrBelowMinimum        = fault.New(fault.Invalid, "balance: top-up below the plan minimum")
	ErrAboveMaximum        = fault.New(fault.Invalid, "balance: top-up above the plan maximum")
	ErrOutOfRange          = fault.New(fault.Invalid, "balance: balance would leave ±credit.MaxAmount")
	ErrInvalid             = fault.New(fault.Invalid, "balance: invalid request")
	// ErrBehind: the subscription's ledger in Redis is behind a seq the
	// caller saw, so Redis lost acknowledged writes; nothing was applied.
	// Repair the subscription (Store.Repair) before applying more.
	ErrBehind = errors.New("balance: redis ledger behind what was acknowledged")
	// ErrTooManyGrants: the subscription has Options.MaxGrants live grants.
	ErrTooManyGrants = fault.New(fault.Invalid, "balance: too many active grants")
	// ErrUnreadableResult: a change was applied but its result could not be
	// read; retrying with the same key returns the same stored result.
	ErrUnreadableResult = errors.New("balance: the change was applied but its result is unreadable")
	// ErrPurchaseLimit: the top-up would exceed the month's purchase
	// limit (a *PurchaseLimitError says which).
	ErrPurchaseLimit        = errors.New("balance: purchase limit reached")
	errStaleCreditValue     = errors.New("balance: credit value changed during top-up")
	errUnexpectedScriptData = errors.New("balance: unexpected script reply")
)

// Retryable reports whether err is transient (Redis down, slow or
// failing over) rather than a refusal.
func Retryable(err error) bool { return fault.Retryable(err) }

// AccountSpec is what the balance needs of a subscription and its plan.
type AccountSpec struct {
	Subscription string
	Customer     string
	Policy       Policy
	// LowThreshold (absolute) and LowPercent (of the last grant, 0-100):
	// the balance is low below the larger of the two; zero disables each.
	LowThreshold credit.Amount
	LowPercent   int
	// TopUpMin and TopUpMax bound a top-up; zero means no bound.
	TopUpMin, TopUpMax credit.Amount
	// CreditValue is the money price of one credit in Currency.
	Currency    string
	CreditValue decimal.Decimal
	// DebtLimit caps overage debt (overage policy); usage beyond it is
	// unfunded. Nil: no limit.
	DebtLimit *credit.Amount
	// PurchaseLimitCredits and PurchaseLimitCharge cap the credits bought
	// and the money charged per calendar month (UTC), pending top-ups
	// included; zero means no limit.
	PurchaseLimitCredits credit.Amount
	PurchaseLimitCharge  decimal.Decimal
	// AutoRechargeThreshold and AutoRechargeAmount are the plan's automatic
	// recharge (both zero: none); a subscription may override them.
	AutoRechargeThreshold, AutoRechargeAmount credit.Amount
}

// GrantRequest adds a grant bucket. Key makes it idempotent.
type GrantRequest struct {
	Key          string
	Subscription string
	Type         GrantType
	Amount       credit.Amount
	EffectiveAt  time.Time // zero: now
	ExpiresAt    time.Time // zero: never
	CostBasis    decimal.Decimal
	Reason       string
	// Charge, in Currency, is recorded in the ledger entry when the grant was
	// paid for (purchased included credits), so invoices can bill it.
	Charge   decimal.Decimal
	Currency string
	// CarryOver marks credits the customer already owns, moved from a
	// plan change's predecessor: refusing them would strand them, so they
	// pass MaxGrants, up to SystemGrantsFactor × MaxGrants.
	CarryOver bool
}

// TopUpRequest is a customer's self-service purchase of credits.
type TopUpRequest struct {
	Key          string
	Subscription string
	Amount       credit.Amount
	ExpiresAt    time.Time // zero: never
	// reserved: a confirmed pending top-up, whose bounds and purchase limit
	// were checked (and counted) when it was created.
	reserved bool
	charge   *decimal.Decimal // reserved: the charge recorded when created
}

// AdjustRequest is an admin's correction: Amount > 0 adds an adjustment
// grant, Amount < 0 deducts (refused beyond the available balance unless
// Force).
type AdjustRequest struct {
	Key          string
	Subscription string
	Amount       credit.Amount
	Reason       string
	Actor        string
	Note         string // optional free text, ledger field "note"
	Public       bool   // the reason may be shown to the customer: ledger field "public" = "1"
	Force        bool
	ExpiresAt    time.Time // for additions; zero: never
	// Charge, in Currency, is money the entry records (negative: a refund,
	// as when a subscription's purchased credits are refunded at its end).
	Charge   decimal.Decimal
	Currency string
}

// LowChange is a low-balance crossing seen by one write.
type LowChange string

// Crossings.
const (
	NoChange LowChange = ""
	WentLow  LowChange = "down" // crossed the threshold downward
	WentOK   LowChange = "up"   // back at or above the threshold
)

// Draw is an amount taken from one grant.
type Draw struct {
	Grant  string
	Amount credit.Amount
}

// ChangeResult is the outcome of a grant, top-up or adjustment. A replay
// of the same key returns the first result with Replayed set.
type ChangeResult struct {
	Seq      int64  // ledger sequence number of the change
	FirstSeq int64  // Expire: first of the entries Seq-FirstSeq+1 it wrote (0: none)
	GrantID  string // grant created, if any
	Draws    []Draw // grants a deduction drew from
	Balance  credit.Amount
	Low      bool
	Crossing LowChange
	Charge   decimal.Decimal // top-ups: amount × credit value
	Currency string          // top-ups
	Replayed bool
}

// Line is one rated usage line.
type Line struct {
	EventID string
	Offset  int64 // Kafka offset; strictly increasing within a batch
	Time    time.Time
	Credits credit.Amount // all of the event's credits, Unique parts included
	// Unique are the line's UNIQUE_COUNT parts (at most MaxUniqueParts):
	// each part's credits are charged only if its value is new in its
	// meter's billing period; LineResult.Repeats says which were not.
	Unique []UniquePart
}

// UniquePart is what one UNIQUE_COUNT meter made of an event: Credits for
// Value, remembered per (subscription, Meter, billing period starting at
// Period) until UniqueKeep after PeriodEnd.
type UniquePart struct {
	Meter             string
	Period, PeriodEnd time.Time
	Value             string
	Credits           credit.Amount
}

// MaxUniqueParts bounds a line's UNIQUE_COUNT parts (a bit mask reports
// them; rating.MaxUniquePerEvent keeps events within it).
const MaxUniqueParts = 52

// UniqueKeep is how long a period's UNIQUE_COUNT memory outlives the period:
// a value arriving later than that is not charged (it could be a repeat).
const UniqueKeep = 35 * 24 * time.Hour

// Batch is the lines of one subscription from one Kafka partition. An empty
// Topic means no Kafka source: only event-id dedupe applies.
type Batch struct {
	Subscription string
	Topic        string
	Partition    int32
	// Committed is the partition's committed offset in Kafka's sense, the
	// next offset to consume (0 when none is known): results journaled for
	// offsets below it are dropped, so they must never be redelivered.
	Committed int64
	// Expect is the highest ledger seq of the subscription the caller has
	// seen (0: none). Redis behind it lost writes: the batch is refused
	// with ErrBehind.
	Expect int64
	Lines  []Line
}

// LineStatus says what Apply did with a line.
type LineStatus byte

// Line statuses.
const (
	Applied         LineStatus = 'A'
	DuplicateOffset LineStatus = 'O' // at or below the partition watermark: redelivery
	DuplicateID     LineStatus = 'I' // event id seen within the dedupe window

	replayed        LineStatus = 'P' // script reply: DuplicateOffset with its journaled first result
	appliedOneGrant LineStatus = 'a' // script reply: Applied, wholly drawn from one grant
)

func (s LineStatus) String() string {
	switch s {
	case Applied:
		return "applied"
	case DuplicateOffset:
		return "duplicate-offset"
	case DuplicateID:
		return "duplicate-id"
	}
	return "unknown"
}

// LineResult is what one line did. Applied lines carry their draws, and so
// do redelivered (DuplicateOffset) lines whose offsets were not yet committed
// (Journaled): the draws are then those of the first application.
type LineResult struct {
	Status    LineStatus
	Journaled bool
	Draws     []Draw
	Unfunded  credit.Amount // shortfall recorded, not charged (unfunded policy or beyond the bound)
	Overage   credit.Amount // shortfall that made the balance go down past the grants
	Balance   credit.Amount // balance right after the line
	// Repeats has bit i set when the line's Unique[i] was not charged: its
	// value was already counted in the period (or arrived past UniqueKeep).
	Repeats uint64
}

// BatchResult is the outcome of one batch.
type BatchResult struct {
	Subscription string
	Lines        []LineResult
	Balance      credit.Amount
	Debt         credit.Amount
	Low          bool
	Crossing     LowChange
	// FirstSeq..LastSeq are the ledger entries written (0 when none); on a
	// replay of journaled lines, also those the first application wrote.
	FirstSeq, LastSeq int64
	// Entries are the ledger entries FirstSeq..LastSeq (possibly with
	// entries of other writes in between), for the archive.
	Entries []Entry
	Err     error
}

// GrantView is one grant in a balance report.
type GrantView struct {
	ID          string
	Type        GrantType
	Amount      credit.Amount
	Remaining   credit.Amount
	EffectiveAt time.Time
	ExpiresAt   time.Time // zero: never
	CostBasis   string
}

// BalanceView is a subscription's balance.
type BalanceView struct {
	Subscription string
	// Total is the ledger balance: remainders of all live grants (also not
	// yet effective, or expired but within grace) less Debt.
	Total credit.Amount
	// Available is what may be spent now: remainders of grants eligible now less Debt.
	Available credit.Amount
	Debt      credit.Amount // overage not yet settled
	Unfunded  credit.Amount // cumulative unfunded usage
	Low       bool
	Policy    Policy
	Grants    []GrantView // live grants in burn-down order
	// LedgerBase is set on an account restored from the archive: its
	// ledger entries up to this seq are only in the archive, and the
	// balance after them was BaseBalance.
	LedgerBase  int64
	BaseBalance credit.Amount

	DebtLimit *credit.Amount // limit on overage debt; nil: none
}

// CheckResult answers whether a subscription may spend an amount now.
type CheckResult struct {
	Allowed   bool
	Available credit.Amount
	Policy    Policy
	// DebtLimit is the account's limit on overage debt (nil: none).
	// Spendable is what usage may take now before any of it is unfunded:
	// Available, plus DebtLimit under the overage policy with a limit
	// (apply.lua settles the debt first, then lets it grow to the limit).
	// Allowed is amount <= Spendable.
	DebtLimit *credit.Amount
	Spendable credit.Amount
}

// Entry is one immutable ledger entry.
type Entry struct {
	Seq      int64
	Kind     string // grant, topup, adjustment, usage, expiry
	Amount   credit.Amount
	Balance  credit.Amount // after the entry
	Time     time.Time
	Grant    string
	Events   int64         // usage: lines summed
	Unfunded credit.Amount // usage: shortfall not charged
	// Snapshot is the account's state after the entry (JSON), on the last
	// entry each script call writes; archived so a subscription whose
	// Redis state lost writes can be rebuilt exactly (Store.Repair).
	Snapshot string
	Fields   map[string]string
}
