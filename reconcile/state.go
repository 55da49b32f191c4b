package reconcile

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// State is what the archive knows of a subscription's balance: the input
// Rebuild hands to balance.Store.Restore when Redis lost the account.
type State struct {
	Subscription string          `json:"subscription_id"`
	Customer     string          `json:"customer_id"`
	LastSeq      int64           `json:"last_seq"` // the restored ledger continues after it
	Balance      decimal.Decimal `json:"balance"`  // sum of the entries = balance_after of the last
	Unfunded     decimal.Decimal `json:"unfunded"` // cumulative unfunded credits (rated lines)
	// Debt is the overage not yet settled: live grants' remainders less Balance.
	Debt   decimal.Decimal `json:"debt"`
	Grants []GrantState    `json:"grants"` // grants with credits left, oldest first
	// Watermarks are the last Kafka offset archived per "topic/partition";
	// a restore must set them or redelivered events would count twice.
	Watermarks map[string]int64 `json:"watermarks"`
	// Exact is false when per-grant remainders cannot be known from the
	// archive: an admin deduction or a debt settlement drew from grants no
	// row names. Balance, LastSeq, Unfunded and Watermarks are exact anyway.
	Exact bool `json:"exact"`
}

// GrantState is one grant's account in the archive.
type GrantState struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Amount    decimal.Decimal `json:"amount"`
	Drawn     decimal.Decimal `json:"drawn"`   // by rated lines
	Expired   decimal.Decimal `json:"expired"` // breakage entries
	Remaining decimal.Decimal `json:"remaining"`
	Created   time.Time       `json:"created_at"`
}

// ArchiveState reads sub's State from the archive (every row once, FINAL).
// Grant effective and expiry times are not archived, so a restore must take
// them from elsewhere (balance's finished-grant records, or the catalog).
func ArchiveState(ctx context.Context, conn driver.Conn, sub string) (State, error) {
	st := State{Subscription: sub, Watermarks: map[string]int64{}, Exact: true}
	fail := func(what string, err error) (State, error) {
		return State{}, fmt.Errorf("reconcile: state of %s: %s: %w", sub, what, err)
	}
	rows, err := conn.Query(ctx, `SELECT seq, toString(kind), amount_micro, grant_id, grant_type, customer_id, created_at
		FROM credit_ledger FINAL WHERE subscription_id = ? ORDER BY seq`, sub)
	if err != nil {
		return fail("ledger", err)
	}
	grants := map[string]*GrantState{}
	for rows.Next() {
		var seq uint64
		var kind, gid, gtype, cust string
		var micro credit.Amount
		var at time.Time
		if err := rows.Scan(&seq, &kind, (*int64)(&micro), &gid, &gtype, &cust, &at); err != nil {
			rows.Close()
			return fail("ledger", err)
		}
		amt := micro.Decimal()
		st.LastSeq, st.Customer = int64(seq), cust
		st.Balance = st.Balance.Add(amt)
		switch {
		case kind == "expiry" && gid != "":
			if g := grants[gid]; g != nil {
				g.Expired = g.Expired.Sub(amt)
			}
		case kind == "adjustment" && amt.IsNegative():
			st.Exact = false
		case gid != "" && amt.IsPositive():
			if gtype == "" && kind == "topup" {
				gtype = "purchased"
			}
			grants[gid] = &GrantState{ID: gid, Type: gtype, Amount: amt, Created: at}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("ledger", err)
	}

	rows, err = conn.Query(ctx, `SELECT g, sum(toDecimal128(a, 0)) FROM
		(SELECT grant_ids, grant_amounts_micro FROM rated_usage FINAL WHERE subscription_id = ?)
		ARRAY JOIN grant_ids AS g, grant_amounts_micro AS a GROUP BY g`, sub)
	if err != nil {
		return fail("draws", err)
	}
	for rows.Next() {
		var gid string
		var a decimal.Decimal
		if err := rows.Scan(&gid, &a); err != nil {
			rows.Close()
			return fail("draws", err)
		}
		a = a.Shift(-credit.Scale) // micro-credits
		if g := grants[gid]; g != nil {
			g.Drawn = g.Drawn.Add(a)
		} else {
			st.Exact = false // a draw from a grant the ledger does not hold
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("draws", err)
	}

	// Overage lines mean debt, and debt is settled from later grants by draws
	// no row names: per-grant remainders are then unknown.
	var overage uint64
	if err := conn.QueryRow(ctx, `SELECT sumIf(toDecimal128(unfunded_credits_micro, 0), status = 'unfunded'), countIf(status = 'overage')
		FROM rated_usage FINAL WHERE subscription_id = ?`, sub).Scan(&st.Unfunded, &overage); err != nil {
		return fail("unfunded", err)
	}
	st.Unfunded = st.Unfunded.Shift(-credit.Scale) // micro-credits
	if overage > 0 {
		st.Exact = false
	}
	rows, err = conn.Query(ctx, `SELECT source_topic, source_partition, max(source_offset) FROM rated_usage FINAL
		WHERE subscription_id = ? AND source_topic != '' GROUP BY source_topic, source_partition`, sub)
	if err != nil {
		return fail("watermarks", err)
	}
	for rows.Next() {
		var topic string
		var part int32
		var off int64
		if err := rows.Scan(&topic, &part, &off); err != nil {
			rows.Close()
			return fail("watermarks", err)
		}
		st.Watermarks[fmt.Sprintf("%s/%d", topic, part)] = off
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("watermarks", err)
	}

	live := decimal.Zero
	for _, g := range grants {
		g.Remaining = g.Amount.Sub(g.Drawn).Sub(g.Expired)
		if g.Remaining.IsNegative() {
			st.Exact = false
		}
		if g.Remaining.IsPositive() {
			st.Grants = append(st.Grants, *g)
			live = live.Add(g.Remaining)
		}
	}
	sort.Slice(st.Grants, func(i, j int) bool {
		return st.Grants[i].Created.Before(st.Grants[j].Created) || st.Grants[i].ID < st.Grants[j].ID && st.Grants[i].Created.Equal(st.Grants[j].Created)
	})
	st.Debt = live.Sub(st.Balance)
	if st.Debt.IsNegative() {
		st.Exact = false
	}
	return st, nil
}
