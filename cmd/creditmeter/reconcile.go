package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/reconcile"
)

func newReconcileCmd() *cobra.Command {
	cfg := config.Default()
	var subs []string
	var deep, repair, asJSON, rebuild, force bool
	var lag, dedupe time.Duration
	var keyPrefix string
	cmd := &cobra.Command{
		Use:   "reconcile [--subscription S]... [--deep] [--repair] [--rebuild [--force]] [--lag D] [--json]",
		Short: "Compare every subscription's Redis balance with its ClickHouse ledger and report drift",
		Long: `reconcile checks the ledger invariant across the two stores, for every
subscription in the archive's credit_ledger or in the catalog (or only those
given with --subscription). Each drifting subscription names its classes:

  - redis_behind: Redis's ledger lacks the archive's last entry or holds
    another entry at its seq: Redis lost acknowledged writes (a restart from
    an older AOF, a failover to a lagging replica), perhaps written on since;
    redis_lost: Redis has no account the archive knows;
  - charges: per-event charges in rated_usage (funded + overage credits of
    the lines up to the offset watermarks of the archive's last snapshot)
    differ from the archived usage entries up to that snapshot, in credits
    or events, or events rated past the watermarks before --lag were never
    charged;
  - balance: the archived entries do not sum to Redis's balance after the
    archive's last entry; redis_inconsistent: Redis's total is not the
    balance after its own last entry;
  - missing: the archive lacks a sequence number Redis wrote (a gap, or an
    entry past the archive's last one older than --lag; younger ones are in
    flight: the engine archives after Redis); extra: archived, unknown to
    Redis; altered (--deep): archived with another kind or amount.

It prints a summary line with the count per class, then one line per
drifting (or repaired) subscription, and exits non-zero when any drifts.
With --repair, a subscription whose Redis lost writes (redis_behind, or
redis_lost when the archive has a snapshot) is rebuilt from the archive,
the record: entries Redis wrote on the lost state are discarded, and the
engine applies the events after the archive's last entry again from Kafka.
For the others, the entries the archive misses are written from Redis. The
archive is never rewritten, so charges and altered drift stay reported.
With --rebuild a lost account is rebuilt from the archive's history instead
(for archives without snapshots): its grants and their remainders, debt,
unfunded total, the ledger's next sequence number and the Kafka offset
watermarks, with the plan's terms and the included credits' expiry from the
catalog. When the archive cannot tell each grant's remainder (after an admin
deduction or a settled overage) it refuses unless --force, which takes the
unknown draws in burn-down order; the balance is exact either way. Event ids
remembered for producer duplicates are not rebuilt by --rebuild (--repair
remembers those of the last two --dedupe-window again).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			rc, _, err := config.NewRedisClient(cfg.Redis, config.RedisTuning{})
			if err != nil {
				return err
			}
			defer rc.Close()
			store, err := balance.New(rc, balance.Options{Prefix: keyPrefix, DedupeWindow: dedupe})
			if err != nil {
				return err
			}
			o := reconcile.Options{Subscriptions: subs, Deep: deep, Repair: repair, Lag: lag, DedupeWindow: dedupe}
			if len(subs) == 0 {
				cat, err := catalogstore.New(rc, keyPrefix)
				if err != nil {
					return err
				}
				all, err := cat.Subscriptions(ctx)
				if err != nil {
					return fmt.Errorf("catalog subscriptions: %w", err)
				}
				for _, s := range all {
					o.Also = append(o.Also, s.ID)
				}
			}
			conn, err := openArchive(ctx, cfg.ClickHouse)
			if err != nil {
				return err
			}
			defer conn.Close()
			rep, err := reconcile.Run(ctx, store, conn, o)
			if err != nil {
				return err
			}
			if rebuild {
				cat, err := catalogstore.New(rc, keyPrefix)
				if err != nil {
					return err
				}
				var lost []string
				for _, d := range rep.Drift {
					if d.RedisMissing {
						lost = append(lost, d.Subscription)
					}
				}
				for _, sub := range lost {
					res, err := rebuildAccount(ctx, cat, store, conn, sub, force)
					if err != nil {
						return fmt.Errorf("rebuild %s: %w", sub, err)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: rebuilt from the archive: balance %s, ledger continues after seq %d\n", sub, res.Balance, res.Seq)
				}
				if len(lost) > 0 {
					if rep, err = reconcile.Run(ctx, store, conn, o); err != nil {
						return err
					}
				}
			}
			if asJSON {
				e := json.NewEncoder(cmd.OutOrStdout())
				e.SetIndent("", "  ")
				if err := e.Encode(rep); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), rep)
			}
			for _, d := range rep.Drift {
				if d.Drifts() {
					return reconcile.ErrDrift
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&subs, "subscription", nil, "check only these subscriptions (repeat or comma-separate)")
	cmd.Flags().BoolVar(&deep, "deep", false, "also compare every entry's kind and amount (reads whole ledgers)")
	cmd.Flags().BoolVar(&repair, "repair", false, "rebuild from the archive the subscriptions whose Redis lost writes, archive the entries the archive misses from the others', then check again")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().DurationVar(&lag, "lag", time.Minute, "how long a Redis ledger entry may stay unarchived (in flight) before it counts as missing")
	cmd.Flags().StringVar(&keyPrefix, "redis-key-prefix", "creditmeter:", "prefix of every Redis key creditmeter writes")
	cmd.Flags().DurationVar(&dedupe, "dedupe-window", time.Hour, "serve's --dedupe-window: --repair remembers the event ids of two windows again")
	cmd.Flags().BoolVar(&rebuild, "rebuild", false, "rebuild accounts Redis lost from the archive, then check again")
	cmd.Flags().BoolVar(&force, "force", false, "with --rebuild: rebuild even when per-grant remainders are not exact in the archive")
	withConfig(cmd, &cfg, config.GroupClickHouse, config.GroupRedis)
	return cmd
}

func printReport(w io.Writer, rep reconcile.Report) {
	drifting := 0
	classes := map[string]int{}
	var names []string
	for _, d := range rep.Drift {
		if d.Drifts() {
			drifting++
		}
		for _, k := range d.Kinds() {
			if classes[k] == 0 {
				names = append(names, k)
			}
			classes[k]++
		}
	}
	sort.Strings(names)
	fmt.Fprintf(w, "checked %d subscriptions, %d with drift", rep.Checked, drifting)
	if len(names) > 0 {
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = fmt.Sprintf("%s %d", k, classes[k])
		}
		fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	if rep.ChargesUnchecked > 0 {
		fmt.Fprintf(w, "%d subscriptions have no snapshot in the archive: their rated_usage was not compared with the ledger\n", rep.ChargesUnchecked)
	}
	for _, d := range rep.Drift {
		if d.RedisRepaired {
			fmt.Fprintf(w, "%s: redis rebuilt from the archive (it had lost writes); ledger at seq %d\n", d.Subscription, d.RedisLastSeq)
		}
		if d.RepairError != "" {
			fmt.Fprintf(w, "%s: not repaired: %s\n", d.Subscription, d.RepairError)
		}
		if d.RedisMissing {
			fmt.Fprintf(w, "%s: redis lost the account; archive has %d entries summing %s\n", d.Subscription, d.ArchiveSeqs, d.ArchiveTotal)
			continue
		}
		if d.RedisBehind {
			fmt.Fprintf(w, "%s: redis behind the archive (lost writes): archive's last seq %d, redis's %d; --repair rebuilds it from the archive\n",
				d.Subscription, d.ArchiveLast, d.RedisLastSeq)
		}
		if c := d.Charges; c != nil && c.Drifts() {
			fmt.Fprintf(w, "%s: rated_usage charges %s credits over %d events, archived usage entries up to seq %d %s over %d events",
				d.Subscription, c.RatedCredits, c.RatedEvents, c.UpToSeq, c.LedgerCredits, c.LedgerEvents)
			if c.Uncharged > 0 {
				fmt.Fprintf(w, "; %d events (%s credits) rated and never charged", c.Uncharged, c.UnchargedCredits)
			}
			fmt.Fprintln(w)
		}
		if d.RedisInconsistent {
			fmt.Fprintf(w, "%s: redis total %s differs from the balance after its last ledger entry\n", d.Subscription, d.RedisTotal)
		}
		fmt.Fprintf(w, "%s: redis total %s, archive sum %s, difference at the archive's last entry %s; redis last seq %d, archived entries %d",
			d.Subscription, d.RedisTotal, d.ArchiveTotal, d.Difference, d.RedisLastSeq, d.ArchiveSeqs)
		if len(d.Missing) > 0 {
			fmt.Fprintf(w, "; missing seqs %v", d.Missing)
		}
		if len(d.Mismatched) > 0 {
			fmt.Fprintf(w, "; altered seqs %v", d.Mismatched)
		}
		if len(d.Extra) > 0 {
			fmt.Fprintf(w, "; seqs unknown to redis %v", d.Extra)
		}
		if d.Pending > 0 {
			fmt.Fprintf(w, "; %d recent entries in flight", d.Pending)
		}
		if d.Repaired > 0 {
			fmt.Fprintf(w, "; repaired %d entries", d.Repaired)
		}
		fmt.Fprintln(w)
	}
}

// rebuildAccount restores a lost account with the catalog's terms. The
// included credits are the account's first ledger entry (grant g1: the
// account is opened with them), so their expiry rule applies to it.
func rebuildAccount(ctx context.Context, cat *catalogstore.Store, store *balance.Store, conn driver.Conn, sub string, force bool) (balance.ChangeResult, error) {
	s, err := cat.Subscription(ctx, sub)
	if err != nil {
		return balance.ChangeResult{}, fmt.Errorf("catalog: %w", err)
	}
	plan, err := cat.Plan(ctx, s.PlanID)
	if err != nil {
		return balance.ChangeResult{}, fmt.Errorf("catalog: %w", err)
	}
	spec, err := accounts.AccountSpec(rating.Terms(s, plan))
	if err != nil {
		return balance.ChangeResult{}, err
	}
	var included time.Time
	if g, ok := rating.InitialGrant(s, plan); ok && g.ExpiresAt != nil {
		included = *g.ExpiresAt
	}
	res, _, err := reconcile.Rebuild(ctx, store, conn, spec, reconcile.RebuildOptions{Force: force, Expiry: func(g reconcile.GrantState) time.Time {
		if g.ID == "g1" {
			return included
		}
		return time.Time{}
	}})
	return res, err
}
