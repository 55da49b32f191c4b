package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/doctor"
)

func newDoctorCmd() *cobra.Command {
	cfg := config.Default()
	var only []string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that Kafka, Redis, ClickHouse and Prometheus answer",
		Long: `doctor tries each service at its configured address and prints one line
per service: reachable or not, the address tried, and the error; for
Kafka how it connected (the TLS handshake and SASL authentication are done
as serve does them, and a failure names the --kafka-* setting to fix); for
ClickHouse also whether the database of --clickhouse-database exists (serve
creates it at start, so a missing one is said, not failed). It exits non-zero
when any checked service is unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			results := doctor.Check(cmd.Context(), cfg, only...)
			failed := 0
			for _, r := range results {
				if r.Err != nil {
					failed++
					fmt.Fprintf(cmd.OutOrStdout(), "%-10s UNREACHABLE  %s  (%v)\n", r.Service, r.Addr, r.Err)
					continue
				}
				note := ""
				if r.Note != "" {
					note = "  " + r.Note
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-10s reachable    %s  (%s)%s\n", r.Service, r.Addr, r.Took.Round(1e5), note)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d services unreachable", failed, len(results))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Engine.KeyPrefix, "redis-key-prefix", cfg.Engine.KeyPrefix, "prefix of creditmeter's Redis keys (the key pattern the ACL check tries)")
	withConfig(cmd, &cfg, config.GroupKafka, config.GroupRedis, config.GroupClickHouse, config.GroupPrometheus)
	cmd.Flags().StringSliceVar(&only, "only", nil, "check only these services: "+strings.Join(doctor.Services, ", "))
	return cmd
}
