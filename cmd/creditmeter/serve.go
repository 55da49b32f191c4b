package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/doctor"
)

func newServeCmd() *cobra.Command {
	cfg := config.Default()
	var keyPrefix string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the engine, the HTTP API and /metrics",
		Long: `serve runs creditmeter: the HTTP API (the catalog under /v1, described at
/v1/openapi.yaml; admin tokens from --admin-tokens) with /healthz, /readyz
(Kafka, Redis and ClickHouse reachable) and /metrics for Prometheus. It stops cleanly on
SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			ready := func(ctx context.Context) error {
				var errs []error
				for _, r := range doctor.Check(ctx, cfg, "kafka", "redis", "clickhouse") {
					if r.Err != nil {
						errs = append(errs, fmt.Errorf("%s (%s): %w", r.Service, r.Addr, r.Err))
					}
				}
				return errors.Join(errs...)
			}
			cat, err := openCatalog(cmd.Context(), cfg.Redis, keyPrefix, log)
			if err != nil {
				return err
			}
			defer cat.stop()
			// Ledger is wired when balance lands; until then subscriptions are
			// created without their first grant.
			handler := api.NewServer(api.Options{Ready: ready, Catalog: cat.store, AdminTokens: cfg.HTTP.AdminTokens, Logger: log})
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
			ln, err := net.Listen("tcp", cfg.HTTP.Addr)
			if err != nil {
				return fmt.Errorf("setting --http-addr (%s): %w", config.EnvName("http-addr"), err)
			}
			log.Info("serving", "http", "http://"+ln.Addr().String())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
			}
			log.Info("shutting down")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return srv.Shutdown(ctx)
		},
	}
	cmd.Flags().StringVar(&keyPrefix, "redis-key-prefix", "creditmeter:", "prefix of every Redis key creditmeter writes")
	withConfig(cmd, &cfg, config.GroupKafka, config.GroupRedis, config.GroupClickHouse, config.GroupHTTP)
	return cmd
}
