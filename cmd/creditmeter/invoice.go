package main

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

func newInvoiceCmd() *cobra.Command {
	cfg := config.Default()
	var sub, period, format, keyPrefix string
	cmd := &cobra.Command{
		Use:   "invoice --subscription S --period YYYY-MM [--format json|csv]",
		Short: "Print a subscription's invoice for a calendar month (UTC) from the ClickHouse archive",
		Long: `invoice builds the invoice of one subscription for one calendar month (UTC)
from the ClickHouse archive, every rated line and ledger entry counted once:

  topup             credits bought, at the charge recorded        (billable)
  purchased_grant   purchased included credits × credit value     (billable)
  overage           debt opened in the month, still open at its end,
                    × credit value                                (billable)
  usage             credits used per feature and their money value
  promotional_used  credits drawn from promotional grants
  breakage          credits that expired unused

total_due is the sum of the billable lines, exact, in the subscription's
currency. The subscription's currency and credit value come from the catalog
in Redis. JSON (default) or CSV on standard output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sub == "" {
				return fmt.Errorf("--subscription is required")
			}
			if _, _, err := archive.ParsePeriod(period); err != nil {
				return fmt.Errorf("--period: %w", err)
			}
			if format != "json" && format != "csv" {
				return fmt.Errorf("--format %q: want json or csv", format)
			}
			ctx := cmd.Context()
			terms, err := catalogTerms(ctx, cfg.Redis, keyPrefix, sub)
			if err != nil {
				return err
			}
			conn, err := openArchive(ctx, cfg.ClickHouse)
			if err != nil {
				return err
			}
			defer conn.Close()
			inv, err := archive.BuildInvoice(ctx, conn, sub, period, archive.InvoiceTerms{CustomerID: terms.CustomerID,
				Currency: terms.Currency, CreditValue: terms.CreditValue, CreditCurrency: terms.CreditCurrency})
			if err != nil {
				return err
			}
			if format == "csv" {
				return inv.WriteCSV(cmd.OutOrStdout())
			}
			return inv.WriteJSON(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", "", "subscription id (required)")
	cmd.Flags().StringVar(&period, "period", "", "calendar month, UTC, as YYYY-MM (required)")
	cmd.Flags().StringVar(&format, "format", "json", "output format: json or csv")
	cmd.Flags().StringVar(&keyPrefix, "redis-key-prefix", "creditmeter:", "prefix of every Redis key creditmeter writes")
	withConfig(cmd, &cfg, config.GroupClickHouse, config.GroupRedis)
	return cmd
}

// catalogTerms reads the subscription's account terms from the catalog.
func catalogTerms(ctx context.Context, cfg config.Redis, prefix, sub string) (rating.AccountTerms, error) {
	rc, _, err := config.NewRedisClient(cfg, config.RedisTuning{})
	if err != nil {
		return rating.AccountTerms{}, err
	}
	defer rc.Close()
	cat, err := catalogstore.New(rc, prefix)
	if err != nil {
		return rating.AccountTerms{}, err
	}
	s, err := cat.Subscription(ctx, sub)
	if err != nil {
		return rating.AccountTerms{}, fmt.Errorf("subscription %s: %w", sub, err)
	}
	p, err := cat.Plan(ctx, s.PlanID)
	if err != nil {
		return rating.AccountTerms{}, fmt.Errorf("plan %s of subscription %s: %w", s.PlanID, sub, err)
	}
	return rating.Terms(s, p), nil
}

// openArchive connects to ClickHouse and brings the schema up to date (the
// rollup tables the queries read are migrations).
func openArchive(ctx context.Context, c config.ClickHouse) (driver.Conn, error) {
	cc := archive.ConnConfigOf(c)
	if err := archive.Migrate(ctx, cc); err != nil {
		return nil, err
	}
	return archive.Open(ctx, cc)
}
