package balance

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/credit"
)

// Note kinds: what a change should tell (webhooks). The scripts record
// them in the account (field nq) atomically with the change, so they
// survive a node that dies before emitting them.
const (
	NoteLow       = 'L' // the balance crossed below the low-balance threshold
	NoteRecovered = 'U' // back at or above it
	NoteExhausted = 'X' // from above zero to zero or below
	NoteExpired   = 'E' // breakage: a grant's remainder expired (Ref the grant, Amount the remainder)
	NoteTopUp     = 'T' // a top-up bought credits (Ref the grant, Amount the credits)
	// A pending top-up's new status (Ref the top-up, Seq its grant's entry
	// once confirmed, Balance as before the call).
	NoteTopUpPending   = 'p'
	NoteTopUpConfirmed = 'c'
	NoteTopUpFailed    = 'f'
	NoteTopUpExpired   = 'x'
)

// Note is one recorded notification of a subscription.
type Note struct {
	Kind    byte
	Seq     int64         // the ledger seq of the change (the call's last entry for a crossing)
	Balance credit.Amount // the balance after it
	Ref     string        // grant id (NoteExpired, NoteTopUp)
	Amount  credit.Amount
}

// PendingNotes are a subscription's notifications not yet drained.
type PendingNotes struct {
	Subscription string
	Customer     string
	Notes        []Note
	raw          string // what AckNotes removes
}

// parseNotes reads nq: ';'-separated "kind,seq,balance[,ref,amount]". An
// unreadable record is skipped (and acknowledged with the rest): it cannot
// become readable later.
func parseNotes(raw string) []Note {
	var out []Note
	for _, r := range strings.Split(raw, ";") {
		p := strings.Split(r, ",")
		if (len(p) != 3 && len(p) != 5) || len(p[0]) != 1 {
			continue
		}
		seq, e1 := strconv.ParseInt(p[1], 10, 64)
		bal, e2 := strconv.ParseInt(p[2], 10, 64)
		if e1 != nil || e2 != nil {
			continue
		}
		n := Note{Kind: p[0][0], Seq: seq, Balance: credit.Amount(bal)}
		if len(p) == 5 {
			amt, err := strconv.ParseInt(p[4], 10, 64)
			if err != nil {
				continue
			}
			n.Ref, n.Amount = p[3], credit.Amount(amt)
		}
		out = append(out, n)
	}
	return out
}

// Notes returns the pending notifications of those of subs that have
// some, in order: one pipelined HMGET per 1,000 subscriptions. A node
// drains them after its own writes; a sweep over every subscription finds
// what a node that died left (the field is written with the change, so
// nothing is lost in between).
func (s *Store) Notes(ctx context.Context, subs []string) ([]PendingNotes, error) {
	var out []PendingNotes
	err := s.accountFields(ctx, subs, []string{"nq", "customer"}, func(sub string, v []any) {
		raw, _ := v[0].(string)
		if raw == "" {
			return
		}
		cust, _ := v[1].(string)
		out = append(out, PendingNotes{Subscription: sub, Customer: cust, Notes: parseNotes(raw), raw: raw})
	})
	return out, err
}

// ackNotesScript removes the records a drain read, if they are still the
// oldest (records are only appended, and the oldest dropped beyond the
// cap): a concurrent drain, or records added since, are left alone.
// KEYS: account; ARGV: the records read.
var ackNotesScript = redis.NewScript(`
local q = redis.call('HGET', KEYS[1], 'nq')
if not q then return 0 end
if q == ARGV[1] then redis.call('HDEL', KEYS[1], 'nq') return 1 end
if string.sub(q, 1, #ARGV[1] + 1) == ARGV[1] .. ';' then
  redis.call('HSET', KEYS[1], 'nq', string.sub(q, #ARGV[1] + 2))
  return 1
end
return 0`)

// AckNotes removes p's notifications once they are emitted. Emitting
// them again (a drain that died before this) is harmless: each event's id
// derives from the subscription, kind and seq.
func (s *Store) AckNotes(ctx context.Context, p PendingNotes) error {
	if p.raw == "" {
		return nil
	}
	if err := validSub(p.Subscription); err != nil {
		return err
	}
	if err := ackNotesScript.Run(ctx, s.rc, []string{s.keys(p.Subscription).Account}, p.raw).Err(); err != nil {
		return fmt.Errorf("acknowledging the notifications of %s: %w", p.Subscription, classify(err))
	}
	return nil
}
