// Command creditmeter is the usage-metering and prepaid-credit engine: the
// engine and HTTP API (serve), the development broker (broker), and tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/creditmeter/creditmeter/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "creditmeter:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "creditmeter",
		Short: "Usage metering and prepaid credits: Kafka events rated into credits, drawn from Redis balances, archived in ClickHouse",
		Long: `creditmeter rates usage events from Kafka into credits, draws them from
prepaid balances in Redis atomically, archives every rated line in ClickHouse
and exposes Prometheus metrics.

Every flag can also be set by an environment variable: --redis-addr is
CREDITMETER_REDIS_ADDR, and so on. A flag given on the command line wins.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newServeCmd(), newBrokerCmd(), newDoctorCmd(), newDemoCmd())
	root.AddCommand(newInvoiceCmd())
	root.AddCommand(newReconcileCmd())
	root.AddCommand(newBenchCmd())
	root.AddCommand(newVersionCmd())
	root.AddCommand(newDLQCmd())
	return root
}

// withConfig binds the settings of groups to cmd's flags and, before cmd runs,
// fills unset flags from CREDITMETER_* variables and validates them.
func withConfig(cmd *cobra.Command, cfg *config.Config, groups ...config.Group) {
	cfg.Bind(cmd.Flags(), groups...)
	cfg.BindLog(cmd.Flags())
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		f.Usage += " [$" + config.EnvName(f.Name) + "]"
	})
	cmd.PreRunE = func(c *cobra.Command, _ []string) error {
		if err := config.ApplyEnv(c.Flags(), config.LookupEnv); err != nil {
			return err
		}
		if err := errors.Join(cfg.ValidateLog(), cfg.Validate(groups...)); err != nil {
			return err
		}
		setLogger(cfg.Log)
		return nil
	}
}
