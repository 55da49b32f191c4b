package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/internal/broker"
	"github.com/creditmeter/creditmeter/internal/config"
)

func newBrokerCmd() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded Kafka-protocol broker for development and tests",
		Long: `broker runs a single-node Kafka-protocol broker (franz-go's kfake) on
loopback. Topics and committed consumer offsets are kept in --data-dir and
survive a restart. The usage topic and its dead-letter topic are created at
start when missing, with --partitions partitions (an existing topic keeps its
partition count). In production point --kafka-brokers at a real cluster instead.

To try creditmeter's --kafka-tls and --kafka-sasl-* settings, start it with
a TLS certificate (--tls-cert-file and --tls-key-file: the listener is then
TLS only) and/or a SASL user (--sasl-mechanism, --sasl-username and
the password: authentication is then required).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			tc, user, err := cfg.Broker.Security()
			if err != nil {
				return err
			}
			o := broker.Options{
				Listen:     cfg.Broker.Listen,
				DataDir:    cfg.Broker.DataDir,
				Partitions: cfg.Broker.Partitions,
				Topics:     []string{cfg.Kafka.Topic, cfg.Kafka.DLQTopic},
				Logger:     log,
				TLS:        tc,
			}
			if user != nil {
				o.SASL = []broker.SASLUser{{Mechanism: user.Mechanism, User: user.User, Password: user.Password}}
			}
			b, err := broker.Start(cmd.Context(), o)
			if err != nil {
				return err
			}
			for _, t := range b.Topics {
				log.Info("topic ready", "topic", t.Topic, "partitions", t.Partitions, "created", t.Created)
			}
			log.Info("broker listening", "addr", b.Addr(), "data_dir", cfg.Broker.DataDir, "tls", tc != nil, "sasl", cfg.Broker.SASLMechanism)
			fmt.Println("broker listening on", b.Addr())
			<-cmd.Context().Done()
			log.Info("broker stopping; flushing state to disk")
			b.Close()
			return nil
		},
	}
	withConfig(cmd, &cfg, config.GroupBroker)
	cmd.Flags().StringVar(&cfg.Kafka.Topic, "kafka-topic", cfg.Kafka.Topic, "topic of usage events [$CREDITMETER_KAFKA_TOPIC]")
	cmd.Flags().StringVar(&cfg.Kafka.DLQTopic, "kafka-dlq-topic", cfg.Kafka.DLQTopic, "topic of rejected usage events [$CREDITMETER_KAFKA_DLQ_TOPIC]")
	return cmd
}
