// Package webhook notifies registered HTTP endpoints of account events
// (low balance, exhausted, top-up, grant expiry, subscription created).
//
// Emit appends an event to a durable outbox in Redis, once per event id:
// the id is derived from what happened (type, subscription, ledger seq), so
// the same crossing seen twice (a redelivered batch, two nodes) is one
// event. Every node runs a Dispatcher; a due delivery is claimed atomically
// (a Lua script moves it in the due set to the end of its lease), so one
// node at a time posts it. Deliveries are signed (Sign), retried on a
// configurable schedule, and logged per endpoint.
//
// Every key is under prefix + "{wh}", one Cluster slot: webhook traffic is
// small, and one slot lets each script touch all the keys it declares.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event types.
const (
	BalanceLow          = "balance.low"          // balance crossed below the low-balance threshold
	BalanceRecovered    = "balance.recovered"    // balance back at or above the threshold
	BalanceExhausted    = "balance.exhausted"    // balance reached zero or below
	TopUpCreated        = "topup.created"        // a top-up bought credits
	GrantExpired        = "grant.expired"        // a grant's remainder expired (breakage)
	SubscriptionCreated = "subscription.created" // a subscription was created
	SubscriptionChanged = "subscription.changed" // a plan change was made (effective at ends_at)
	SubscriptionEnded   = "subscription.ended"   // a subscription was cancelled (ends at ends_at)
)

// Types lists every event type, in documentation order.
var Types = []string{BalanceLow, BalanceRecovered, BalanceExhausted, TopUpCreated, GrantExpired, SubscriptionCreated,
	SubscriptionChanged, SubscriptionEnded}

// KnownType reports whether t is an event type.
func KnownType(t string) bool {
	for _, k := range Types {
		if k == t {
			return true
		}
	}
	return false
}

// Event is what a delivery's body holds.
type Event struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	Data      Data      `json:"data"`
}

// Data is an event's subject. Credits and money are decimal strings.
type Data struct {
	Subscription string `json:"subscription_id"`
	Customer     string `json:"customer_id,omitempty"`
	Plan         string `json:"plan_id,omitempty"`
	// Balance is the subscription's balance in credits after the change.
	Balance string `json:"balance,omitempty"`
	// Amount is the credits of a top-up or of an expired remainder.
	Amount   string `json:"amount,omitempty"`
	Charge   string `json:"charge,omitempty"`
	Currency string `json:"currency,omitempty"`
	Grant    string `json:"grant_id,omitempty"`
	// LedgerSeq is the ledger entry of the change.
	LedgerSeq int64  `json:"ledger_seq,omitempty"`
	StartsAt  string `json:"starts_at,omitempty"`
	// TopUp and Reason: a pending top-up's events.
	TopUp  string `json:"topup_id,omitempty"`
	Reason string `json:"reason,omitempty"`
	EndsAt string `json:"ends_at,omitempty"`
	// ReplacedBy is the successor of a plan change.
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// Emitter appends events to the outbox; emitting an event id again is a
// no-op.
type Emitter interface {
	Emit(ctx context.Context, e Event) error
}

// EventID is the stable id of an event of type typ about subject,
// distinguished by parts (e.g. a ledger seq): the same inputs always give
// the same id, on any node.
func EventID(typ, subject string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(typ + "\x00" + subject))
	for _, p := range parts {
		h.Write([]byte("\x00" + p))
	}
	return "evt_" + hex.EncodeToString(h.Sum(nil))[:32]
}

// SeqEventID is the id of an event caused by the subscription's ledger entry seq.
func SeqEventID(typ, sub string, seq int64) string {
	return EventID(typ, sub, strconv.FormatInt(seq, 10))
}

// Headers of a delivery.
const (
	HeaderSignature = "Creditmeter-Signature"   // t=<unix seconds>,v1=<hex HMAC-SHA256>
	HeaderEventID   = "Creditmeter-Event-Id"    // stable per event: dedupe on it
	HeaderEventType = "Creditmeter-Event-Type"  // the event's type
	HeaderDelivery  = "Creditmeter-Delivery-Id" // stable per (event, endpoint)
	HeaderAttempt   = "Creditmeter-Attempt"     // 1 for the first attempt
)

// Sign is the Creditmeter-Signature header value of body sent at t:
// HMAC-SHA256 keyed by the endpoint's secret over "<t>.<body>", t in unix
// seconds, hex-encoded.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrStale        = errors.New("webhook: signature timestamp outside the tolerance")
)

// Verify checks a Creditmeter-Signature header against body, as a receiver
// does: the HMAC must match (any v1 value, so a rotated secret can be
// verified with either) and t be within tolerance of now (replays).
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, p := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header %q", ErrBadSignature, header)
	}
	want := mac(secret, ts, body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}
